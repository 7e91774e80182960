/* Text charts for the terminal: one labelled horizontal bar per line, shared by
 * --show-probs, the REPL and the notebooks, so that a distribution can be read at a
 * glance without a plotting library:
 *
 *   " the |############        | 0.6000"
 *
 * Plain ASCII ('#' and spaces), so the output is the same in every terminal, file and
 * test. */
#ifndef QUILL_GENERATE_CHART_H
#define QUILL_GENERATE_CHART_H

#include <stdio.h>

/* Writes "<label> |<bar>| <value>\n" to out. The bar is `width` cells between the pipes,
 * of which round(value / max * width) are '#': value <= 0, NaN or max <= 0 give an empty
 * bar, value >= max a full one. The value is printed with 4 decimals. The caller pads
 * labels to line the bars up (e.g. with "%-12s"). width < 0 counts as 0. */
void chart_bar(FILE *out, const char *label, double value, double max, int width);

#endif

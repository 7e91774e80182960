#include "chart.h"

/* How many of width cells value/max fills, rounded to the nearest cell. Comparisons are
 * written so that NaN falls into the empty case. */
static int chart_cells(double value, double max, int width)
{
    if (!(value > 0.0) || !(max > 0.0))
        return 0;
    if (value >= max)
        return width;
    int cells = (int)(value / max * width + 0.5);
    return cells < width ? cells : width;
}

void chart_bar(FILE *out, const char *label, double value, double max, int width)
{
    width = width > 0 ? width : 0;
    int cells = chart_cells(value, max, width);
    fprintf(out, "%s |", label);
    for (int i = 0; i < width; i++)
        fputc(i < cells ? '#' : ' ', out);
    fprintf(out, "| %.4f\n", value);
}

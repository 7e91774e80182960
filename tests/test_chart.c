/* chart_bar's text, checked character by character against bars counted by hand, and
 * quill generate --show-probs drawing its candidates with it. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../generate/chart.h"
#include "test_util.h"

/* What chart_bar writes for these arguments (malloc'd). */
static char *bar_text(const char *label, double value, double max, int width)
{
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    cr_assert(out, "open_memstream failed");
    chart_bar(out, label, value, max, width);
    fclose(out);
    return text;
}

static void expect_bar(const char *label, double value, double max, int width, const char *want)
{
    char *got = bar_text(label, value, max, width);
    cr_expect_str_eq(got, want, "chart_bar(\"%s\", %g, %g, %d)", label, value, max, width);
    free(got);
}

/* 0.5 of 1 over 10 cells is 5 cells; 0.26 rounds to 3 (2.6), 0.24 to 2 (2.4). */
Test(chart, bar_fills_value_over_max_of_the_width)
{
    expect_bar("the", 0.5, 1.0, 10, "the |#####     | 0.5000\n");
    expect_bar(" a", 0.26, 1.0, 10, " a |###       | 0.2600\n");
    expect_bar("x", 0.24, 1.0, 10, "x |##        | 0.2400\n");
    expect_bar("top", 3.0, 4.0, 4, "top |### | 3.0000\n");
}

/* Out-of-range values: the bar stays within its width, and the value is still printed. */
Test(chart, bar_clamps_to_empty_and_full)
{
    expect_bar("over", 2.0, 1.0, 5, "over |#####| 2.0000\n");
    expect_bar("zero", 0.0, 1.0, 5, "zero |     | 0.0000\n");
    expect_bar("neg", -1.0, 1.0, 3, "neg |   | -1.0000\n");
    expect_bar("nomax", 0.5, 0.0, 3, "nomax |   | 0.5000\n");
    expect_bar("nan", NAN, 1.0, 3, "nan |   | nan\n");
    expect_bar("w0", 0.5, 1.0, 0, "w0 || 0.5000\n");
    expect_bar("wneg", 0.5, 1.0, -4, "wneg || 0.5000\n");
}

/* quill generate --show-probs draws its candidates with chart_bar: every candidate line
 * ends in "|<30 cells>| p", with round(p * 30) of the cells filled, and the first step of
 * "Once upon a time" with stories260K is ',' for certain (llama.cpp's greedy text). */
Test(chart, show_probs_draws_bars_of_the_candidates, .timeout = 60)
{
    SHARED_FILE_OR_SKIP(model, "models/stories260K.gguf");
    char *out;
    int status = quill(&out, "generate %s --prompt 'Once upon a time' -n 3 --temperature 0 "
                             "--show-probs --no-echo", model);
    cr_assert_eq(status, 0, "%s", out);
    cr_expect_not_null(strstr(out, "',' "), "no ',' candidate in:\n%s", out);
    int bars = 0;
    for (const char *bar = strchr(out, '|'); bar; bar = strchr(bar + 1, '\n')) {
        bar = strchr(bar, '|');
        if (!bar)
            break;
        int filled = (int)strspn(bar + 1, "#"), empty = (int)strspn(bar + 1 + filled, " ");
        double p = atof(bar + 1 + filled + empty + 2);
        cr_expect_eq(filled + empty, 30, "a bar of %d cells:\n%s", filled + empty, bar);
        cr_expect_eq(bar[1 + filled + empty], '|');
        cr_expect_eq(filled, (int)(p * 30 + 0.5), "p %g drawn with %d cells", p, filled);
        bars++;
    }
    cr_expect_geq(bars, 3, "%d bars in:\n%s", bars, out);
    free(out);
}

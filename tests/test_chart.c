/* chart_bar's text, checked character by character against bars counted by hand. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "../generate/chart.h"

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

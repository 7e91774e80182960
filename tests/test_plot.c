/* quill plot and DIR/loss.svg: the axes' ticks against hand-picked round numbers, and the
 * SVG read back by a small XML checker written here (well-formed XML, an <svg> root in the
 * SVG namespace), with every series present and holding one point per logged value. */
#include <criterion/criterion.h>
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../train/plot.h"
#include "fileio.h"
#include "test_util.h"

/* ---- plot_axis ------------------------------------------------------------------------- */

static void expect_axis(double lo, double hi, double want_lo, double want_hi, double want_step,
                        int want_ticks)
{
    PlotAxis a = plot_axis(lo, hi, 5);
    cr_expect(fabs(a.lo - want_lo) < 1e-12 && fabs(a.hi - want_hi) < 1e-12 &&
                  fabs(a.step - want_step) < 1e-12 * want_step && a.n_ticks == want_ticks,
              "plot_axis(%g, %g): [%g, %g] step %g, %d ticks; want [%g, %g] step %g, %d ticks",
              lo, hi, a.lo, a.hi, a.step, a.n_ticks, want_lo, want_hi, want_step, want_ticks);
}

/* About 5 intervals; the step is the smallest of 1, 2, 2.5, 5 x 10^k that gives at most 5:
 *   0..2000:      2000/5 = 400    -> 500:  0, 500, ..., 2000
 *   1.37..5.78:   4.41/5 = 0.882  -> 1:    1, 2, ..., 6
 *   1e-4..1e-3:   9e-4/5 = 1.8e-4 -> 2e-4: 0, 2e-4, ..., 1e-3 (1e-3 / 2e-4 is 5.000000000000001
 *                                          in floats: still 5 intervals)
 *   0..45000:     9000            -> 10000: 0, 10k, ..., 50k
 *   2.1..2.21:    0.022           -> 0.025: 2.1, 2.125, ..., 2.225
 *   3..3:         widened by 10% to 2.7..3.3: 0.12 -> 0.2: 2.6, 2.8, ..., 3.4 */
Test(plot, axis_ticks_are_round_numbers)
{
    expect_axis(0, 2000, 0, 2000, 500, 5);
    expect_axis(1.37, 5.78, 1, 6, 1, 6);
    expect_axis(1e-4, 1e-3, 0, 1e-3, 2e-4, 6);
    expect_axis(0, 45000, 0, 50000, 10000, 6);
    expect_axis(2.1, 2.21, 2.1, 2.225, 0.025, 6);
    expect_axis(3, 3, 2.6, 3.4, 0.2, 5);
}

/* ---- a small XML checker ------------------------------------------------------------- */

enum { MAX_ATTRS = 32, MAX_DEPTH = 64 };

typedef struct {
    char name[32];
    int n_attrs;
    char attr_names[MAX_ATTRS][32];
    char *attr_values[MAX_ATTRS]; /* malloc'd, with the five named entities decoded */
} XmlElement;

typedef void (*XmlVisit)(void *ctx, const XmlElement *e, int depth);

typedef struct {
    const char *p;
    char why[200];
} XmlReader;

static bool xml_fail(XmlReader *r, const char *what)
{
    snprintf(r->why, sizeof r->why, "%s at \"%.30s\"", what, r->p);
    return false;
}

static void xml_skip_space(XmlReader *r)
{
    while (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r')
        r->p++;
}

static bool xml_name(XmlReader *r, char *out, size_t cap)
{
    size_t n = 0;
    if (!(isalpha((unsigned char)*r->p) || *r->p == '_' || *r->p == ':'))
        return xml_fail(r, "expected a name");
    while (isalnum((unsigned char)*r->p) || strchr("_:.-", *r->p)) {
        if (n + 1 < cap)
            out[n++] = *r->p;
        r->p++;
    }
    out[n] = '\0';
    return true;
}

/* "&amp;" and the other four, or a character reference "&#123;" / "&#x7b;". */
static bool xml_reference(XmlReader *r)
{
    static const char *const named[] = {"&amp;", "&lt;", "&gt;", "&quot;", "&apos;"};
    for (int i = 0; i < 5; i++)
        if (strncmp(r->p, named[i], strlen(named[i])) == 0) {
            r->p += strlen(named[i]);
            return true;
        }
    const char *q = r->p + 1;
    if (*q++ != '#')
        return xml_fail(r, "unknown entity");
    bool hex = *q == 'x' && q++;
    const char *digits = q;
    while (hex ? isxdigit((unsigned char)*q) : isdigit((unsigned char)*q))
        q++;
    if (q == digits || *q != ';')
        return xml_fail(r, "bad character reference");
    r->p = q + 1;
    return true;
}

/* Character data up to the next '<': no stray '&'. */
static bool xml_text(XmlReader *r)
{
    while (*r->p && *r->p != '<')
        if (*r->p == '&' ? !xml_reference(r) : (r->p++, false))
            return false;
    return true;
}

/* A copy of an attribute value (already checked) with &amp; &lt; &gt; &quot; &apos;
 * decoded; character references stay as written (quill writes none). */
static char *xml_decode(const char *start, size_t len)
{
    static const char *const named[] = {"&amp;", "&lt;", "&gt;", "&quot;", "&apos;"};
    static const char plain[] = "&<>\"'";
    char *out = malloc(len + 1), *o = out;
    cr_assert_not_null(out);
    for (const char *p = start; p < start + len;) {
        int i = 0;
        while (i < 5 && strncmp(p, named[i], strlen(named[i])) != 0)
            i++;
        *o++ = i < 5 ? plain[i] : *p;
        p += i < 5 ? strlen(named[i]) : 1;
    }
    *o = '\0';
    return out;
}

static bool xml_attribute(XmlReader *r, XmlElement *e)
{
    if (e->n_attrs == MAX_ATTRS)
        return xml_fail(r, "too many attributes");
    char *name = e->attr_names[e->n_attrs];
    if (!xml_name(r, name, sizeof e->attr_names[0]))
        return false;
    for (int i = 0; i < e->n_attrs; i++)
        if (strcmp(e->attr_names[i], name) == 0)
            return xml_fail(r, "attribute given twice");
    xml_skip_space(r);
    if (*r->p++ != '=')
        return xml_fail(r, "expected '='");
    xml_skip_space(r);
    char quote = *r->p++;
    if (quote != '"' && quote != '\'')
        return xml_fail(r, "expected a quoted value");
    const char *start = r->p;
    while (*r->p && *r->p != quote) {
        if (*r->p == '<')
            return xml_fail(r, "'<' in an attribute value");
        if (*r->p == '&' ? !xml_reference(r) : (r->p++, false))
            return false;
    }
    if (*r->p != quote)
        return xml_fail(r, "unterminated attribute value");
    e->attr_values[e->n_attrs++] = xml_decode(start, (size_t)(r->p++ - start));
    return true;
}

static void xml_element_free(XmlElement *e)
{
    for (int i = 0; i < e->n_attrs; i++)
        free(e->attr_values[i]);
    e->n_attrs = 0;
}

/* Comments and processing instructions (the <?xml ...?> declaration). */
static bool xml_misc(XmlReader *r, bool *skipped)
{
    const char *close = strncmp(r->p, "<!--", 4) == 0 ? "-->"
                        : strncmp(r->p, "<?", 2) == 0 ? "?>" : NULL;
    *skipped = close != NULL;
    if (!close)
        return true;
    const char *end = strstr(r->p, close);
    if (!end)
        return xml_fail(r, "unterminated comment or declaration");
    r->p = end + strlen(close);
    return true;
}

/* A start tag (after '<'): calls visit, and pushes the name unless the tag closes itself. */
static bool xml_start_tag(XmlReader *r, char stack[][32], int *depth, XmlVisit visit, void *ctx)
{
    XmlElement e = {.n_attrs = 0};
    if (!xml_name(r, e.name, sizeof e.name))
        return false;
    for (;;) {
        const char *before = r->p;
        xml_skip_space(r);
        if (*r->p == '>' || strncmp(r->p, "/>", 2) == 0)
            break;
        if (r->p == before || !xml_attribute(r, &e)) {
            xml_element_free(&e);
            return r->p == before ? xml_fail(r, "expected space before an attribute") : false;
        }
    }
    visit(ctx, &e, *depth);
    xml_element_free(&e);
    bool closes_itself = *r->p == '/';
    r->p += closes_itself ? 2 : 1;
    if (closes_itself)
        return true;
    if (*depth == MAX_DEPTH)
        return xml_fail(r, "nested too deeply");
    snprintf(stack[(*depth)++], 32, "%s", e.name);
    return true;
}

static bool xml_end_tag(XmlReader *r, char stack[][32], int *depth)
{
    char name[32];
    if (!xml_name(r, name, sizeof name))
        return false;
    xml_skip_space(r);
    if (*r->p++ != '>')
        return xml_fail(r, "expected '>'");
    if (*depth == 0 || strcmp(stack[*depth - 1], name) != 0)
        return xml_fail(r, "end tag does not match its start tag");
    (*depth)--;
    return true;
}

/* Checks that text is one well-formed XML element (with comments and declarations around
 * it), calling visit on every start tag. */
static bool xml_check(const char *text, XmlVisit visit, void *ctx, char *why, size_t cap)
{
    XmlReader r = {.p = text};
    char stack[MAX_DEPTH][32];
    int depth = 0, roots = 0;
    bool ok = true;
    while (ok && *r.p) {
        bool skipped;
        if (depth == 0)
            xml_skip_space(&r);
        if (!*r.p || !(ok = xml_misc(&r, &skipped)) || skipped)
            continue;
        if (*r.p != '<') {
            ok = depth > 0 ? xml_text(&r) : xml_fail(&r, "text outside the root element");
        } else if (r.p[1] == '/') {
            r.p += 2;
            ok = xml_end_tag(&r, stack, &depth);
        } else {
            r.p++;
            roots += depth == 0;
            ok = roots == 1 ? xml_start_tag(&r, stack, &depth, visit, ctx)
                            : xml_fail(&r, "a second root element");
        }
    }
    if (ok && (depth != 0 || roots != 1))
        ok = xml_fail(&r, depth ? "unclosed element" : "no root element");
    snprintf(why, cap, "%s", ok ? "" : r.why);
    return ok;
}

static void visit_nothing(void *ctx, const XmlElement *e, int depth)
{
    (void)ctx, (void)e, (void)depth;
}

/* The checker itself: it must say no to each of these, or the tests below prove nothing. */
Test(plot, xml_checker_rejects_broken_documents)
{
    static const char *const broken[] = {
        "<svg><g></svg></g>",            /* crossed tags */
        "<svg><g>",                      /* unclosed */
        "<svg a=\"1\" a=\"2\"/>",        /* an attribute twice */
        "<svg a=1/>",                    /* an unquoted value */
        "<svg>fish & chips</svg>",       /* a bare ampersand */
        "<svg a=\"x<y\"/>",              /* '<' in a value */
        "<svg/><svg/>",                  /* two roots */
        "text<svg/>",                    /* text outside the root */
        "<svg a=\"1\"b=\"2\"/>",         /* no space between attributes */
        "",                              /* nothing */
    };
    char why[256];
    int rejected = 0;
    for (size_t i = 0; i < sizeof broken / sizeof *broken; i++) {
        bool ok = xml_check(broken[i], visit_nothing, NULL, why, sizeof why);
        cr_expect(!ok, "accepted: %s", broken[i]);
        rejected += !ok;
    }
    cr_expect_eq(rejected, 10);
    cr_expect(xml_check("<?xml version=\"1.0\"?>\n<!-- c --><svg a='1' b=\"&lt;&#65;\">"
                        "<g>x &amp; y</g><line/></svg>\n",
                        visit_nothing, NULL, why, sizeof why),
              "a good document was refused: %s", why);
}

/* ---- what an SVG of quill plot must hold ------------------------------------------------ */

typedef struct {
    char run[256], series[32], stroke[16];
    int n_points;
    bool x_increasing, inside; /* every point inside the picture, x growing with the step */
} Polyline;

typedef struct {
    bool root_is_svg;
    double width, height;
    int n_lines;
    Polyline lines[64];
} SvgSummary;

static const char *attr(const XmlElement *e, const char *name)
{
    for (int i = 0; i < e->n_attrs; i++)
        if (strcmp(e->attr_names[i], name) == 0)
            return e->attr_values[i];
    return "";
}

/* "x,y x,y ...": how many points, and whether they are in the picture in step order. */
static void polyline_points(Polyline *l, const char *points, const SvgSummary *svg)
{
    double last_x = -1.0, x, y;
    int used;
    l->x_increasing = l->inside = true;
    for (const char *p = points; sscanf(p, "%lf,%lf%n", &x, &y, &used) == 2; p += used) {
        l->n_points++;
        l->x_increasing &= x > last_x;
        l->inside &= x >= 0 && x <= svg->width && y >= 0 && y <= svg->height;
        last_x = x;
    }
}

static void svg_visit(void *ctx, const XmlElement *e, int depth)
{
    SvgSummary *svg = ctx;
    if (depth == 0) {
        svg->root_is_svg = strcmp(e->name, "svg") == 0 &&
                           strcmp(attr(e, "xmlns"), "http://www.w3.org/2000/svg") == 0;
        svg->width = atof(attr(e, "width"));
        svg->height = atof(attr(e, "height"));
    }
    if (strcmp(e->name, "polyline") != 0 || svg->n_lines == 64)
        return;
    Polyline *l = &svg->lines[svg->n_lines++];
    snprintf(l->run, sizeof l->run, "%s", attr(e, "data-run"));
    snprintf(l->series, sizeof l->series, "%s", attr(e, "data-series"));
    snprintf(l->stroke, sizeof l->stroke, "%s", attr(e, "stroke"));
    polyline_points(l, attr(e, "points"), svg);
}

static void svg_read(const char *path, SvgSummary *svg)
{
    char *text, why[256];
    size_t len;
    Error err;
    cr_assert_eq(file_read_all(path, &text, &len, &err), 0, "%s", err.msg);
    memset(svg, 0, sizeof *svg);
    bool ok = xml_check(text, svg_visit, svg, why, sizeof why);
    free(text);
    cr_assert(ok, "%s is not well-formed XML: %s", path, why);
    cr_assert(svg->root_is_svg, "%s: the root is not an <svg> in the SVG namespace", path);
    cr_assert(svg->width > 0 && svg->height > 0, "%s: no size", path);
}

static const Polyline *find_line(const SvgSummary *svg, const char *run, const char *series)
{
    for (int i = 0; i < svg->n_lines; i++)
        if (strcmp(svg->lines[i].run, run) == 0 && strcmp(svg->lines[i].series, series) == 0)
            return &svg->lines[i];
    return NULL;
}

static void expect_series(const SvgSummary *svg, const char *run, const char *series, int n)
{
    const Polyline *l = find_line(svg, run, series);
    cr_assert_not_null(l, "no %s series for %s", series, run);
    cr_expect_eq(l->n_points, n, "%s of %s: %d points, want %d", series, run, l->n_points, n);
    cr_expect(l->x_increasing && l->inside, "%s of %s: points out of order or outside",
              series, run);
}

/* A log of `steps` steps with a validation loss every `eval_every`, as progress.c writes. */
static void write_log(const char *dir, int steps, int eval_every)
{
    char path[512];
    snprintf(path, sizeof path, "%s/log.jsonl", dir);
    FILE *fp = fopen(path, "w");
    cr_assert_not_null(fp);
    for (int s = 1; s <= steps; s++) {
        fprintf(fp, "{\"step\":%d,\"loss\":%.6f,\"lr\":%g,\"grad_norm\":%.6f,"
                    "\"tokens_per_s\":%.1f}\n",
                s, 4.0 / s, 1e-3 * s / steps, 1.0 + 0.1 * s, 1000.0 * s);
        if (s % eval_every == 0)
            fprintf(fp, "{\"step\":%d,\"val_loss\":%.6f}\n", s, 4.5 / s);
    }
    fclose(fp);
}

static void write_file(const char *dir, const char *name, const char *text)
{
    char path[512];
    Error err;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    cr_assert_eq(file_write_atomic(path, text, strlen(text), &err), 0, "%s", err.msg);
}

/* 7 steps with a validation every 3: 7 points of each per-step quantity, 2 of val_loss. */
Test(plot, one_run_has_every_series_with_one_point_per_logged_value)
{
    const char *dir = test_make_tmpdir();
    write_log(dir, 7, 3);
    quill_ok("plot %s", dir);
    char path[512];
    snprintf(path, sizeof path, "%s/loss.svg", dir);
    SvgSummary svg;
    svg_read(path, &svg);
    cr_expect_eq(svg.n_lines, 5, "%d polylines, want 5", svg.n_lines);
    expect_series(&svg, dir, "loss", 7);
    expect_series(&svg, dir, "lr", 7);
    expect_series(&svg, dir, "grad_norm", 7);
    expect_series(&svg, dir, "tokens_per_s", 7);
    expect_series(&svg, dir, "val_loss", 2);
}

/* Two runs on one chart: each has its series, and each its own colour. */
Test(plot, several_runs_compare_in_one_picture)
{
    char a[256], b[256], out[300];
    const char *dir = test_make_tmpdir();
    snprintf(a, sizeof a, "%s/a", dir);
    snprintf(b, sizeof b, "%s/b & c", dir); /* a name that needs escaping in XML */
    Error err;
    cr_assert_eq(dir_create_all(a, &err), 0, "%s", err.msg);
    cr_assert_eq(dir_create_all(b, &err), 0, "%s", err.msg);
    write_log(a, 10, 5);
    write_log(b, 4, 2);
    snprintf(out, sizeof out, "%s/compare.svg", dir);
    quill_ok("plot %s '%s' -o %s", a, b, out);
    SvgSummary svg;
    svg_read(out, &svg);
    cr_expect_eq(svg.n_lines, 10, "%d polylines, want 10", svg.n_lines);
    static const char *const per_step[] = {"loss", "lr", "grad_norm", "tokens_per_s"};
    for (int i = 0; i < 4; i++) {
        expect_series(&svg, a, per_step[i], 10);
        expect_series(&svg, b, per_step[i], 4);
    }
    expect_series(&svg, a, "val_loss", 2);
    expect_series(&svg, b, "val_loss", 2);
    const Polyline *la = find_line(&svg, a, "loss"), *lb = find_line(&svg, b, "loss");
    cr_expect_str_neq(la->stroke, lb->stroke, "both runs are drawn in %s", la->stroke);
}

/* Missing, malformed and empty logs: one error line that names the file (and the line). */
Test(plot, bad_logs_give_one_clear_error_line)
{
    static const struct {
        const char *log, *message;
    } cases[] = {
        {"{\"step\":1,\"loss\":2.5}\n\n{\"step\":2,\"loss\":2.4\n", "log.jsonl:3: not valid JSON"},
        {"{\"loss\":2.5}\n", "log.jsonl:1: the object has no \"step\""},
        {"{\"step\":1,\"loss\":\"low\"}\n", "log.jsonl:1: key 'loss' expects a number"},
        {"{\"step\":1,\"loss\":1e999}\n", "log.jsonl:1: key 'loss' is inf"},
        {"{\"step\":-3,\"loss\":2}\n", "log.jsonl:1: step -3 is negative"},
        {"\n", "log.jsonl: no steps logged yet"},
    };
    const char *dir = test_make_tmpdir();
    expect_clean_error("log.jsonl", "plot %s", dir); /* no log at all */
    int checked = 0;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++, checked++) {
        write_file(dir, "log.jsonl", cases[i].log);
        expect_clean_error(cases[i].message, "plot %s", dir);
    }
    cr_expect_eq(checked, 6);
    expect_clean_error("name the picture with -o", "plot %s %s", dir, dir);
}

/* quill train leaves DIR/loss.svg: 6 steps, a validation at step 3 and the final one over
 * the whole split at step 6. */
Test(plot, training_writes_loss_svg_at_the_end, .timeout = 60)
{
    const char *dir = test_make_tmpdir();
    const char *corpus = test_write_corpus(dir);
    char run[256], path[300];
    snprintf(run, sizeof run, "%s/run", dir);
    quill_ok("train --config configs/tiny.json --data %s --out %s --steps 6 --eval-every 3 "
             "--eval-batches 1",
             corpus, run);
    snprintf(path, sizeof path, "%s/loss.svg", run);
    SvgSummary svg;
    svg_read(path, &svg);
    expect_series(&svg, run, "loss", 6);
    expect_series(&svg, run, "lr", 6);
    expect_series(&svg, run, "val_loss", 2);
}

/* quill plot writes SVG and nothing else: an output named for another format (a .png that
 * would hold SVG text, which image viewers refuse) is refused before anything is written,
 * naming the way to convert; a .svg in capitals is fine. */
Test(plot, an_output_that_is_not_svg_is_refused)
{
    const char *dir = test_make_tmpdir();
    write_log(dir, 3, 3);
    const char *names[] = {"x.png", "x.pdf", "x"};
    int refused = 0;
    for (int i = 0; i < 3; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        expect_clean_error("writes SVG only", "plot %s -o %s", dir, path);
        expect_clean_error("rsvg-convert", "plot %s -o %s", dir, path);
        cr_expect_neq(access(path, F_OK), 0, "%s was written", path);
        refused++;
    }
    cr_assert_eq(refused, 3);
    quill_ok("plot %s -o %s/X.SVG", dir, dir);
}

/* quill plot: training curves from log.jsonl, as an SVG that quill writes itself.
 *
 * Three steps: read each run's log into series of (step, value) points; find each panel's
 * axes (round ticks that cover the data); write the SVG: a title, a legend, and four panels
 * of polylines. Coordinates: SVG's y axis points down, so a value v on an axis [lo, hi]
 * drawn between pixel rows top and bottom sits at bottom - (v - lo) / (hi - lo) * (bottom -
 * top). */
#include "plot.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buffer.h"
#include "cli.h"
#include "config.h"
#include "fileio.h"
#include "train.h"

static const char *const SERIES_KEYS[PLOT_N_SERIES] = {
#define X(id, key, panel) key,
    PLOT_SERIES(X)
#undef X
};
static const int SERIES_PANEL[PLOT_N_SERIES] = {
#define X(id, key, panel) panel,
    PLOT_SERIES(X)
#undef X
};

enum { N_PANELS = 4 };
static const char *const PANEL_TITLES[N_PANELS] = {
    "loss (train, validation)", "learning rate", "gradient norm (before clipping)",
    "tokens per second"};

/* ---- reading log.jsonl ----------------------------------------------------------------- */

/* The largest magnitude a logged value can have: the float range, with room to spare. */
static const double LOG_VALUE_MAX = 1e39;

static int series_append(PlotSeries *s, double step, double value, Error *err)
{
    size_t need = (size_t)s->n + 1;
    if (buffer_reserve_items(&s->step, &s->cap_step, need, sizeof *s->step, 256, "plot points",
                             err) != 0 ||
        buffer_reserve_items(&s->value, &s->cap_value, need, sizeof *s->value, 256,
                             "plot points", err) != 0)
        return -1;
    s->step[s->n] = step;
    s->value[s->n] = value;
    s->n++;
    return 0;
}

static bool line_is_blank(const char *line, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (line[i] != ' ' && line[i] != '\t' && line[i] != '\r')
            return false;
    return true;
}

/* One line: {"step": S, ...} adds a point to each series whose key it has. */
static int run_log_add_line(RunLog *log, const char *line, size_t len, const char *origin,
                            Error *err)
{
    const char *names[1 + PLOT_N_SERIES] = {"step"};
    memcpy(names + 1, SERIES_KEYS, sizeof SERIES_KEYS);
    double values[1 + PLOT_N_SERIES];
    bool present[1 + PLOT_N_SERIES];
    if (config_read_json_numbers(line, len, origin, names, 1 + PLOT_N_SERIES, values, present,
                                 err) != 0)
        return -1;
    if (!present[0])
        return error_set(err, "%s: the object has no \"step\"", origin);
    /* quill logs floats: anything beyond their range (1e999 reads as infinity) is damage,
     * and would break the axes */
    for (int i = 0; i < 1 + PLOT_N_SERIES; i++)
        if (present[i] && !(fabs(values[i]) <= LOG_VALUE_MAX))
            return error_set(err, "%s: key '%s' is %g, not a value a training log holds", origin,
                             names[i], values[i]);
    if (values[0] < 0.0)
        return error_set(err, "%s: step %g is negative", origin, values[0]);
    for (int s = 0; s < PLOT_N_SERIES; s++)
        if (present[1 + s] && series_append(&log->series[s], values[0], values[1 + s], err) != 0)
            return -1;
    return 0;
}

static int run_log_parse(RunLog *log, const char *text, size_t len, const char *path, Error *err)
{
    int line_number = 0, points = 0;
    for (const char *line = text; line < text + len;) {
        const char *end = memchr(line, '\n', (size_t)(text + len - line));
        size_t line_len = end ? (size_t)(end - line) : (size_t)(text + len - line);
        line_number++;
        if (!line_is_blank(line, line_len)) {
            char origin[4200];
            snprintf(origin, sizeof origin, "%s:%d", path, line_number);
            if (run_log_add_line(log, line, line_len, origin, err) != 0)
                return -1;
            points++;
        }
        line += line_len + (end != NULL);
    }
    return points > 0 ? 0 : error_set(err, "%s: no steps logged yet", path);
}

int run_log_read(RunLog *log, const char *dir, Error *err)
{
    memset(log, 0, sizeof *log);
    log->dir = dir;
    char path[4096], *text;
    size_t len;
    snprintf(path, sizeof path, "%s/log.jsonl", dir);
    if (file_read_all(path, &text, &len, err) != 0)
        return -1;
    int status = run_log_parse(log, text, len, path, err);
    free(text);
    if (status != 0)
        run_log_free(log);
    return status;
}

void run_log_free(RunLog *log)
{
    if (!log)
        return;
    for (int s = 0; s < PLOT_N_SERIES; s++) {
        free(log->series[s].step);
        free(log->series[s].value);
    }
    memset(log, 0, sizeof *log);
}

/* ---- axes -------------------------------------------------------------------------------- */

/* The smallest of 1, 2, 2.5, 5 and 10 times a power of ten that is >= raw (raw > 0). */
static double nice_step(double raw)
{
    static const double multiples[] = {1.0, 2.0, 2.5, 5.0, 10.0};
    double power = pow(10.0, floor(log10(raw)));
    for (int i = 0; i < 4; i++)
        if (multiples[i] * power >= raw * (1.0 - 1e-9))
            return multiples[i] * power;
    return 10.0 * power;
}

PlotAxis plot_axis(double lo, double hi, int target)
{
    if (!(hi > lo)) { /* one value (or none): a range around it */
        double half = lo != 0.0 ? fabs(lo) * 0.1 : 1.0;
        lo -= half;
        hi += half;
    }
    double step = nice_step((hi - lo) / (target > 0 ? target : 1));
    /* the small slack keeps 0.001 / 0.0002 = 5.000000000000001 at 5, not 6 */
    double first = floor(lo / step + 1e-9), last = ceil(hi / step - 1e-9);
    return (PlotAxis){.lo = first * step, .hi = last * step, .step = step,
                      .n_ticks = (int)(last - first) + 1};
}

/* Tick i of an axis, as an exact multiple of the step (no drift from adding steps up). */
static double axis_tick(const PlotAxis *a, int i)
{
    return (floor(a->lo / a->step + 0.5) + i) * a->step;
}

/* "0.0002", "1.5", "30k": %g, thousands above 10,000, and no "-0". */
static void format_tick(char *out, size_t cap, double v, double step)
{
    if (fabs(v) < step * 1e-6)
        v = 0.0;
    if (fabs(v) >= 1e4)
        snprintf(out, cap, "%gk", v / 1e3);
    else
        snprintf(out, cap, "%g", v);
}

/* ---- SVG --------------------------------------------------------------------------------- */

enum {
    WIDTH = 960,
    CELL_W = WIDTH / 2,
    CELL_H = 290,
    MARGIN_LEFT = 64,  /* room for the y tick labels */
    MARGIN_RIGHT = 24,
    MARGIN_TOP = 30,   /* the panel's title */
    MARGIN_BOTTOM = 46, /* x tick labels and "step" */
    LEGEND_ROW = 20,
    CHAR_W = 7,        /* about one character of the 12 px sans-serif font */
};

/* One colour per run (the Tableau 10 palette: distinct, and readable on white). */
static const char *const COLOURS[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728",
                                      "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"};
enum { N_COLOURS = sizeof COLOURS / sizeof *COLOURS };

/* Where a panel is drawn: its plotting rectangle and its axes. */
typedef struct {
    double left, right, top, bottom;
    PlotAxis x, y;
    bool has_data;
} Panel;

static double panel_x(const Panel *p, double step)
{
    return p->left + (step - p->x.lo) / (p->x.hi - p->x.lo) * (p->right - p->left);
}

static double panel_y(const Panel *p, double value)
{
    return p->bottom - (value - p->y.lo) / (p->y.hi - p->y.lo) * (p->bottom - p->top);
}

/* Text with &, <, >, " and ' escaped, as XML needs inside elements and attributes. */
static void svg_text(FILE *out, const char *text)
{
    for (const char *c = text; *c; c++) {
        switch (*c) {
        case '&': fputs("&amp;", out); break;
        case '<': fputs("&lt;", out); break;
        case '>': fputs("&gt;", out); break;
        case '"': fputs("&quot;", out); break;
        case '\'': fputs("&apos;", out); break;
        default: fputc(*c, out);
        }
    }
}

/* The smallest and largest value of a panel's series over every run; false when empty. */
static bool panel_range(const RunLog *runs, int n_runs, int panel, double *lo, double *hi)
{
    *lo = INFINITY;
    *hi = -INFINITY;
    for (int r = 0; r < n_runs; r++)
        for (int s = 0; s < PLOT_N_SERIES; s++)
            for (int i = 0; SERIES_PANEL[s] == panel && i < runs[r].series[s].n; i++) {
                *lo = fmin(*lo, runs[r].series[s].value[i]);
                *hi = fmax(*hi, runs[r].series[s].value[i]);
            }
    return *lo <= *hi;
}

static double last_step(const RunLog *runs, int n_runs)
{
    double last = 0.0;
    for (int r = 0; r < n_runs; r++)
        for (int s = 0; s < PLOT_N_SERIES; s++)
            for (int i = 0; i < runs[r].series[s].n; i++)
                last = fmax(last, runs[r].series[s].step[i]);
    return last;
}

static Panel panel_layout(const RunLog *runs, int n_runs, int panel, double top0)
{
    double cell_x = (panel % 2) * CELL_W, cell_y = top0 + (panel / 2) * CELL_H;
    Panel p = {.left = cell_x + MARGIN_LEFT, .right = cell_x + CELL_W - MARGIN_RIGHT,
               .top = cell_y + MARGIN_TOP, .bottom = cell_y + CELL_H - MARGIN_BOTTOM};
    p.x = plot_axis(0.0, last_step(runs, n_runs), 5);
    double lo, hi;
    p.has_data = panel_range(runs, n_runs, panel, &lo, &hi);
    p.y = plot_axis(p.has_data ? lo : 0.0, p.has_data ? hi : 1.0, 5);
    return p;
}

/* The frame, the grid lines with their tick labels, the title and the x axis's name. */
static void svg_panel_axes(FILE *out, const Panel *p, const char *title)
{
    char label[64];
    fprintf(out, "<text x=\"%.0f\" y=\"%.0f\" font-size=\"13\" font-weight=\"bold\">%s</text>\n",
            p->left, p->top - 10, title);
    fprintf(out, "<g stroke=\"#e6e6e6\">\n");
    for (int i = 0; i < p->x.n_ticks; i++)
        fprintf(out, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n",
                panel_x(p, axis_tick(&p->x, i)), p->top, panel_x(p, axis_tick(&p->x, i)), p->bottom);
    for (int i = 0; i < p->y.n_ticks; i++)
        fprintf(out, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", p->left,
                panel_y(p, axis_tick(&p->y, i)), p->right, panel_y(p, axis_tick(&p->y, i)));
    fprintf(out, "</g>\n<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
                 "fill=\"none\" stroke=\"#888\"/>\n",
            p->left, p->top, p->right - p->left, p->bottom - p->top);
    fprintf(out, "<g fill=\"#444\" text-anchor=\"middle\">\n");
    for (int i = 0; i < p->x.n_ticks; i++) {
        format_tick(label, sizeof label, axis_tick(&p->x, i), p->x.step);
        fprintf(out, "<text x=\"%.1f\" y=\"%.1f\">%s</text>\n", panel_x(p, axis_tick(&p->x, i)),
                p->bottom + 16, label);
    }
    fprintf(out, "<text x=\"%.1f\" y=\"%.1f\">step</text>\n</g>\n", (p->left + p->right) / 2,
            p->bottom + 34);
    fprintf(out, "<g fill=\"#444\" text-anchor=\"end\">\n");
    for (int i = 0; i < p->y.n_ticks; i++) {
        format_tick(label, sizeof label, axis_tick(&p->y, i), p->y.step);
        fprintf(out, "<text x=\"%.1f\" y=\"%.1f\">%s</text>\n", p->left - 6,
                panel_y(p, axis_tick(&p->y, i)) + 4, label);
    }
    fprintf(out, "</g>\n");
}

/* One series as a polyline; validation losses (a few points) dashed, each point a dot. */
static void svg_series(FILE *out, const Panel *p, const RunLog *run, int s, const char *colour)
{
    const PlotSeries *series = &run->series[s];
    bool dashed = s == PLOT_VAL_LOSS;
    fprintf(out, "<polyline data-run=\"");
    svg_text(out, run->dir);
    fprintf(out, "\" data-series=\"%s\" fill=\"none\" stroke=\"%s\" stroke-width=\"%s\" "
                 "stroke-linejoin=\"round\"%s points=\"",
            SERIES_KEYS[s], colour, dashed ? "1.8" : "1.2",
            dashed ? " stroke-dasharray=\"6 3\"" : "");
    for (int i = 0; i < series->n; i++)
        fprintf(out, "%s%.1f,%.1f", i ? " " : "", panel_x(p, series->step[i]),
                panel_y(p, series->value[i]));
    fprintf(out, "\"/>\n");
    for (int i = 0; dashed && i < series->n; i++)
        fprintf(out, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n",
                panel_x(p, series->step[i]), panel_y(p, series->value[i]), colour);
}

static void svg_panel(FILE *out, const RunLog *runs, int n_runs, int panel, double top0)
{
    Panel p = panel_layout(runs, n_runs, panel, top0);
    fprintf(out, "<g data-panel=\"%d\">\n", panel);
    svg_panel_axes(out, &p, PANEL_TITLES[panel]);
    if (!p.has_data)
        fprintf(out, "<text x=\"%.1f\" y=\"%.1f\" fill=\"#888\" text-anchor=\"middle\">"
                     "not in the log</text>\n",
                (p.left + p.right) / 2, (p.top + p.bottom) / 2);
    for (int r = 0; r < n_runs; r++)
        for (int s = 0; s < PLOT_N_SERIES; s++)
            if (SERIES_PANEL[s] == panel && runs[r].series[s].n > 0)
                svg_series(out, &p, &runs[r], s, COLOURS[r % N_COLOURS]);
    fprintf(out, "</g>\n");
}

/* One legend entry: a short line in the run's style, then its label. Entries go left to
 * right and wrap to a new row at the right edge. With out NULL nothing is written: the
 * layout alone, to measure the legend's height. Returns the x after the entry. */
static double svg_legend_entry(FILE *out, double x, double *y, const char *colour,
                               const char *dash, const char *label)
{
    double width = 30 + CHAR_W * (double)strlen(label) + 20;
    if (x > 20 && x + width > WIDTH - 20) {
        x = 20;
        *y += LEGEND_ROW;
    }
    if (out) {
        fprintf(out, "<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"%s\" "
                     "stroke-width=\"2.5\"%s/>\n<text x=\"%.0f\" y=\"%.0f\">",
                x, *y - 4, x + 24, *y - 4, colour, dash, x + 30, *y);
        svg_text(out, label);
        fprintf(out, "</text>\n");
    }
    return x + width;
}

/* The legend, its first row at y: each run's colour, then what solid and dashed lines
 * mean. Returns the y below it (out NULL: only that). */
static double svg_legend(FILE *out, const RunLog *runs, int n_runs, double y)
{
    double x = 20;
    if (out)
        fprintf(out, "<g data-legend=\"runs\">\n");
    for (int r = 0; r < n_runs; r++)
        x = svg_legend_entry(out, x, &y, COLOURS[r % N_COLOURS], "", runs[r].dir);
    x = svg_legend_entry(out, x, &y, "#555", "", "train");
    svg_legend_entry(out, x, &y, "#555", " stroke-dasharray=\"6 3\"", "validation");
    if (out)
        fprintf(out, "</g>\n");
    return y + 10;
}

void plot_write_svg(FILE *out, const RunLog *runs, int n_runs)
{
    enum { LEGEND_Y = 52 };
    double top0 = svg_legend(NULL, runs, n_runs, LEGEND_Y);
    int height = (int)top0 + 2 * CELL_H;
    fprintf(out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                 "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
                 "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"12\">\n"
                 "<rect width=\"%d\" height=\"%d\" fill=\"white\"/>\n"
                 "<text x=\"20\" y=\"28\" font-size=\"16\" font-weight=\"bold\">"
                 "Training curves</text>\n",
            WIDTH, height, WIDTH, height, WIDTH, height);
    svg_legend(out, runs, n_runs, LEGEND_Y);
    for (int panel = 0; panel < N_PANELS; panel++)
        svg_panel(out, runs, n_runs, panel, top0);
    fprintf(out, "</svg>\n");
}

int plot_runs(const char *const *dirs, int n_dirs, const char *out_path, Error *err)
{
    RunLog *runs = calloc((size_t)n_dirs, sizeof *runs);
    if (!runs)
        return error_set(err, "out of memory");
    int status = 0, n_read = 0;
    while (status == 0 && n_read < n_dirs)
        if ((status = run_log_read(&runs[n_read], dirs[n_read], err)) == 0)
            n_read++;
    AtomicFile af;
    if (status == 0)
        status = atomic_file_open(&af, out_path, err);
    if (status == 0) {
        plot_write_svg(af.fp, runs, n_dirs);
        status = atomic_file_commit(&af, err);
    }
    for (int r = 0; r < n_read; r++)
        run_log_free(&runs[r]);
    free(runs);
    return status;
}

/* ---- quill plot -------------------------------------------------------------------------- */

enum { PLOT_MAX_DIRS = 16 };

int cmd_plot(int argc, char **argv, Error *err)
{
    const char *output = NULL;
    const Flag flags[] = {
        {"output", FLAG_STRING, &output, 0, 0,
         "the SVG file to write (default with one DIR: DIR/loss.svg)", NULL, 'o'},
    };
    const CommandSpec spec = {
        .usage = "usage: quill plot DIR... [-o FILE.svg]\n\n"
                 "Draws the training curves of one or more quill train run directories (their\n"
                 "log.jsonl): train and validation loss, learning rate, gradient norm and\n"
                 "tokens/s against the step, one colour per run, as an SVG file.\n",
        .flags = flags,
        .n_flags = sizeof flags / sizeof *flags,
        .min_positional = 1,
        .max_positional = PLOT_MAX_DIRS,
    };
    const char *dirs[PLOT_MAX_DIRS];
    int n_dirs;
    int parsed = cli_parse_command(&spec, argc, argv, dirs, &n_dirs, stdout, err);
    if (parsed != 0)
        return parsed < 0 ? -1 : 0;
    char default_output[4096];
    if (!output && n_dirs > 1)
        return error_set(err, "several run directories: name the picture with -o FILE.svg");
    if (!output) {
        snprintf(default_output, sizeof default_output, "%s/loss.svg", dirs[0]);
        output = default_output;
    }
    /* SVG text in a file named .png would be refused by every image viewer */
    size_t len = strlen(output);
    if (len < 4 || strcasecmp(output + len - 4, ".svg") != 0)
        return error_set(err, "%s: quill plot writes SVG only: write FILE.svg, then convert it "
                              "with rsvg-convert -o %s FILE.svg (Debian's librsvg2-bin)",
                         output, output);
    if (plot_runs(dirs, n_dirs, output, err) != 0)
        return -1;
    printf("wrote %s\n", output);
    return 0;
}

void plot_write_run_svg(const char *dir, int step)
{
    char path[4096];
    Error err;
    snprintf(path, sizeof path, "%s/loss.svg", dir);
    if (step > 0 && plot_runs(&dir, 1, path, &err) != 0)
        fprintf(stderr, "quill: warning: %s\n", err.msg);
}

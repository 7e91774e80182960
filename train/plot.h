/* Training curves as an SVG picture, drawn from run directories' log.jsonl files
 * (progress.h writes them): `quill plot DIR... [-o FILE.svg]`, and DIR/loss.svg at the end
 * of `quill train`.
 *
 *   +-- title, legend: one colour per run; solid = train, dashed + dots = validation ----+
 *   | loss (train and validation)             | learning rate                           |
 *   | gradient norm (before clipping)         | tokens per second                       |
 *   +--------------------------------------------------------------------------------------+
 *
 * Every panel has the step on its x axis (shared by all four), ticks at round numbers
 * (1, 2, 2.5 or 5 times a power of ten) and a light grid. Each series is one <polyline>
 * with every logged point, tagged data-run="DIR" data-series="loss" (or val_loss, lr,
 * grad_norm, tokens_per_s), so programs and tests can find it. The SVG is plain text that
 * quill writes itself: no plotting library. */
#ifndef QUILL_TRAIN_PLOT_H
#define QUILL_TRAIN_PLOT_H

#include <stdbool.h>
#include <stdio.h>

#include "error.h"

/* The quantities of log.jsonl that are drawn, with the key each is logged under. */
#define PLOT_SERIES(X)                                                                      \
    /* id                 key             panel */                                          \
    X(PLOT_LOSS,          "loss",         0)                                                \
    X(PLOT_VAL_LOSS,      "val_loss",     0)                                                \
    X(PLOT_LR,            "lr",           1)                                                \
    X(PLOT_GRAD_NORM,     "grad_norm",    2)                                                \
    X(PLOT_TOKENS_PER_S,  "tokens_per_s", 3)

typedef enum {
#define X(id, key, panel) id,
    PLOT_SERIES(X)
#undef X
    PLOT_N_SERIES
} PlotSeriesId;

/* One quantity of one run: n points (step, value), in the order logged. */
typedef struct {
    int n;
    size_t cap_step, cap_value; /* room in each array, grown together */
    double *step;
    double *value;
} PlotSeries;

/* What one run directory's log.jsonl holds. */
typedef struct {
    const char *dir;                      /* as given (not owned): the legend's label */
    PlotSeries series[PLOT_N_SERIES];
} RunLog;

/* Reads DIR/log.jsonl. Every non-empty line must be a JSON object with a "step"; a missing
 * file, a malformed line (the message gives its number) or a log without any step is one
 * error line. */
int run_log_read(RunLog *log, const char *dir, Error *err);
void run_log_free(RunLog *log); /* NULL-safe */

/* An axis from lo to hi with ticks every `step`: n_ticks ticks at lo, lo + step, ..., hi. */
typedef struct {
    double lo, hi, step;
    int n_ticks;
} PlotAxis;

/* The axis for data in [lo, hi] with about `target` intervals: the step is 1, 2, 2.5 or 5
 * times a power of ten (the smallest such step that gives at most `target` intervals), and
 * the ends are the multiples of it just outside the data. Empty ranges (lo == hi) are
 * widened around the value. */
PlotAxis plot_axis(double lo, double hi, int target);

/* Draws the runs' curves as an SVG document into out. */
void plot_write_svg(FILE *out, const RunLog *runs, int n_runs);

/* Reads each directory's log and writes the SVG to out_path atomically (fileio.h). */
int plot_runs(const char *const *dirs, int n_dirs, const char *out_path, Error *err);
/* DIR/loss.svg, a run's curves so far (`quill plot DIR` draws the same), once it has taken
 * a step. Training has succeeded by then, so a picture that cannot be written is only a
 * warning on stderr. */
void plot_write_run_svg(const char *dir, int step);

#endif

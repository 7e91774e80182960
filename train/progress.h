/* Training progress, for people and for programs.
 *   On a terminal: one live line, redrawn every step, all of it on a wide terminal:
 *     step   120/2000  [#.....]  loss 2.3456  lr 1.00e-03  gnorm 0.853  12.3k tok/s  ETA 1m34s
 *   (the bar is 20 characters). It is fitted to the terminal's width (a line that wraps
 *   would leave a line per update): when the terminal is too narrow, the least important
 *   fields go first: lr (the schedule is known), the gradient norm, the bar, tokens/s, the
 *   ETA; step and loss always stay.
 *   Otherwise (a pipe, a log file, any rank under mpirun): a plain line every log_every
 *   steps, with no carriage return and no terminal escape.
 *   Always: DIR/log.jsonl gets one JSON object per step,
 *     {"step":120,"loss":2.3456,"lr":0.001,"grad_norm":0.853,"tokens_per_s":12345}
 *   and one per evaluation, {"step":200,"val_loss":2.1}; the evaluation that ends a run
 *   (over the whole validation split) also has "final":true, so that a run killed during it
 *   can tell on --resume that it still has it to do. "step" counts completed steps. */
#ifndef QUILL_TRAIN_PROGRESS_H
#define QUILL_TRAIN_PROGRESS_H

#include <stdbool.h>
#include <stdio.h>

#include "error.h"

typedef struct {
    FILE *out;          /* the progress lines: stdout */
    int columns;        /* the terminal's width for the live line; 0: plain lines */
    FILE *log;          /* DIR/log.jsonl, appended */
    int total_steps;
    int log_every;
    double step_seconds; /* smoothed, for the ETA */
    bool line_open;      /* the live line is on screen and needs clearing */
} Progress;

/* Opens DIR/log.jsonl. When resuming after `resume_step` steps, lines of later steps
 * (written after the checkpoint the run resumes from) are dropped first, so the log
 * reads as if the run had never stopped. may_draw: a live line is allowed when stdout is a
 * terminal (false under mpirun: a rank's stdout is a pseudo-terminal that Open MPI relays
 * to wherever mpirun's own output goes, a pipe as often as a terminal). */
int progress_open(Progress *p, const char *dir, int resume_step, int total_steps, int log_every,
                  bool may_draw, Error *err);

/* The width of the terminal on fd: its window size, else $COLUMNS, else 80. */
int progress_terminal_columns(int fd);
void progress_close(Progress *p); /* NULL-safe */

void progress_step(Progress *p, int step, float loss, float lr, float grad_norm,
                   double tokens_per_s, double seconds);
void progress_eval(Progress *p, int step, float val_loss, const char *what, bool final);
/* Whether DIR/log.jsonl holds the final evaluation of step `step` (false when there is no
 * log). */
int progress_final_eval_logged(const char *dir, int step, bool *logged, Error *err);
/* Prints a message on its own line (clearing the live line first). */
void progress_message(Progress *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif

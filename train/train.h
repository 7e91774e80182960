/* The training side's commands. Each returns 0 on success, or -1 with err describing the
 * problem in one line (the dispatcher prints it as "quill: error: ..." and exits 1), or
 * (quill train) an exit status of its own. argv[0] is the command's own name. */
#ifndef QUILL_TRAIN_TRAIN_H
#define QUILL_TRAIN_TRAIN_H

#include "error.h"

/* quill train: train a model on text files, or resume a run. Ctrl-C stops it after a
 * checkpoint, and it returns TRAIN_INTERRUPTED: the exit status a shell reports for a
 * process SIGINT ended (128 + 2), so that a script can tell a stopped run from a finished
 * one. */
enum { TRAIN_INTERRUPTED = 130 };
int cmd_train(int argc, char **argv, Error *err);
/* quill finetune: a LoRA adapter on a frozen base model (train/finetune.c). */
int cmd_finetune(int argc, char **argv, Error *err);
/* quill eval: mean loss and perplexity of a model on a text file. */
int cmd_eval(int argc, char **argv, Error *err);
/* quill bench: machine peaks and training throughput. */
int cmd_bench(int argc, char **argv, Error *err);
/* quill bench-data: the data pipeline on a generated corpus (train/bench_data.c). */
int cmd_bench_data(int argc, char **argv, Error *err);

/* quill plot: training curves of run directories as an SVG (plot.h). */
int cmd_plot(int argc, char **argv, Error *err);

#endif

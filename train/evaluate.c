#include "evaluate.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "ops.h"
#include "loader.h"
#include "matmul.h"
#include "train.h"

static int windows_check(const TokenData *d, DataSplit split, int T, Error *err)
{
    size_t n;
    data_split(d, split, &n);
    if (data_window_count(d, split, T) == 0)
        return error_set(err, "%zu token%s %s too few for one window of %d + 1 tokens", n,
                         plural_s((long long)n), n == 1 ? "is" : "are", T);
    return 0;
}

int eval_mean_loss(const Model *m, Activations *a, TokenData *d, DataSplit split, int B,
                   int T, int max_batches, double *loss, size_t *n_tokens, Error *err)
{
    if (windows_check(d, split, T, err) != 0)
        return -1;
    size_t windows = data_window_count(d, split, T);
    size_t total = max_batches > 0 ? (size_t)max_batches * B : windows;
    int *inputs = malloc((size_t)B * T * sizeof(int));
    int *targets = malloc((size_t)B * T * sizeof(int));
    if (!inputs || !targets) {
        free(inputs);
        free(targets);
        return error_set(err, "out of memory for evaluation batches");
    }
    double sum = 0.0;
    size_t counted = 0; /* the targets the loss is taken on: all of them, but for chat data */
    for (size_t first = 0; first < total; first += (size_t)B) {
        int batch = total - first < (size_t)B ? (int)(total - first) : B;
        data_batch(d, split, batch, T, NULL, first, inputs, targets);
        model_forward(m, a, inputs, batch, T, 0);
        int n = crossentropy_counted(targets, batch * T);
        sum += (double)model_loss(m, a, targets, batch, T) * n;
        counted += (size_t)n;
    }
    free(inputs);
    free(targets);
    *n_tokens = counted;
    *loss = counted > 0 ? sum / (double)counted : 0.0;
    return 0;
}

/* ---- quill eval --------------------------------------------------------------------- */

typedef struct {
    const char *data;
    const char *split;
    int seq_len;
    int batch_size;
    int threads;
} EvalOptions;

static const char *const SPLIT_NAMES[] = {"train", "val", "all", NULL};

static DataSplit split_from_name(const char *name)
{
    return strcmp(name, "train") == 0 ? SPLIT_TRAIN : strcmp(name, "val") == 0 ? SPLIT_VAL : SPLIT_ALL;
}

static int eval_run(const char *model_path, const EvalOptions *o, Error *err)
{
    DataSplit split = split_from_name(o->split);
    Model m;
    Tokenizer tok;
    TokenData d = {0};
    Activations a = {0};
    int status = -1;
    if (model_file_load(model_path, &m, &tok, err) != 0)
        return -1;
    int T = o->seq_len > 0 ? o->seq_len : m.config.context;
    if (T > m.config.context) {
        error_set(err, "--seq-len %d exceeds the model's context %d", T, m.config.context);
        goto done;
    }
    const char *paths[] = {o->data};
    Error warning;
    if (data_load(&d, paths, 1, &tok, NULL, &warning, err) != 0)
        goto done;
    if (windows_check(&d, split, T, err) != 0) {
        error_prefix(err, "%s", o->data);
        goto done;
    }
    if (activations_init(&a, &m, o->batch_size, T, err) != 0)
        goto done;
    double loss;
    size_t n_tokens;
    if (eval_mean_loss(&m, &a, &d, split, o->batch_size, T, 0, &loss, &n_tokens, err) != 0) {
        error_prefix(err, "%s", o->data);
        goto done;
    }
    printf("loss %.4f  perplexity %.3f  (%zu tokens of %s, split %s, windows of %d)\n", loss,
           exp(loss), n_tokens, o->data, o->split, T);
    status = 0;
done:
    activations_free(&a);
    data_free(&d);
    tokenizer_free(&tok);
    model_free(&m);
    return status;
}

int cmd_eval(int argc, char **argv, Error *err)
{
    EvalOptions o = {.split = "all", .batch_size = 8};
    const Flag flags[] = {
        {"data", FLAG_STRING, &o.data, 0, 0, "text file to evaluate on"},
        {"split", FLAG_CHOICE, &o.split, 0, 0, "the part of the file (val: its last 10%, as "
                                               "in training)", SPLIT_NAMES},
        {"seq-len", FLAG_INT, &o.seq_len, 0, 1 << 20, "tokens per window (0: model context)"},
        {"batch-size", FLAG_INT, &o.batch_size, 1, 4096, "windows per forward pass"},
        {"threads", FLAG_INT, &o.threads, 0, 1024, "compute threads (0: all cores)"},
    };
    const CommandSpec spec = {
        .usage = "usage: quill eval MODEL --data FILE [options]\n\n"
                 "Prints the mean loss and perplexity of MODEL (a GGUF file) on FILE, over\n"
                 "consecutive windows of seq-len + 1 tokens.\n",
        .flags = flags,
        .n_flags = sizeof flags / sizeof *flags,
        .min_positional = 1,
        .max_positional = 1,
    };
    const char *positional[1];
    int n_positional;
    int parsed = cli_parse_command(&spec, argc, argv, positional, &n_positional, stdout, err);
    if (parsed != 0)
        return parsed < 0 ? -1 : 0;
    if (!o.data)
        return error_set(err, "--data FILE is missing (see quill eval --help)");
    compute_set_threads(o.threads);
    char path[4096];
    model_path_resolve(positional[0], path, sizeof path);
    return eval_run(path, &o, err);
}

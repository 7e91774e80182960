/* bench_stream.c: the C side of bench_stream.py. Streams greedy tokens from a model through
 * libquill's quill_generate, as a C program embedding quill does, and prints each run's
 * tokens/s from the first piece of text to the last (the measure bench_stream.py takes of
 * Python's Context.stream), one number per line.
 *
 *   bench_stream MODEL THREADS TOKENS RUNS PROMPT */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "quill.h"

typedef struct {
    int n_pieces;
    double first, last; /* seconds, CLOCK_MONOTONIC */
} Timing;

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Each piece of text, timed as the Python reader times the pieces it receives. */
static bool on_token(const quill_token_event *ev, void *user)
{
    Timing *t = user;
    if (ev->n_text == 0)
        return true;
    t->last = now();
    if (t->n_pieces++ == 0)
        t->first = t->last;
    return true;
}

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: bench_stream MODEL THREADS TOKENS RUNS PROMPT\n");
        return 2;
    }
    quill_model_params mp = quill_model_params_default();
    mp.n_threads = atoi(argv[2]);
    int tokens = atoi(argv[3]), runs = atoi(argv[4]);
    quill_model *m = quill_model_load(argv[1], &mp);
    quill_context *c = m ? quill_context_new(m, NULL) : NULL;
    quill_sampler_params sp = quill_sampler_params_default();
    sp.temperature = 0;
    quill_sampler *s = c ? quill_sampler_new(m, &sp) : NULL;
    int status = s ? 0 : 1;
    for (int r = 0; status == 0 && r < runs; r++) {
        Timing t = {0};
        quill_generate_params p = quill_generate_params_default();
        p.max_tokens = tokens;
        p.ignore_eos = true;
        p.on_token = on_token;
        p.user = &t;
        quill_seq_clear(c, 0);
        quill_sampler_reset(s);
        status = quill_generate(c, s, argv[5], &p, NULL) == QUILL_OK ? 0 : 1;
        if (status == 0)
            printf("%.3f\n", (t.n_pieces - 1) / (t.last - t.first));
        fflush(stdout);
    }
    if (status != 0)
        fprintf(stderr, "bench_stream: %s\n", quill_last_error());
    quill_sampler_free(s);
    quill_context_free(c);
    quill_model_free(m);
    return status;
}

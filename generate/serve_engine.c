/* quill serve's engine: continuous batching over the sequences of one context
 * (serve_engine.h has the picture). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buffer.h"
#include "serve_engine.h"

struct Engine {
    quill_context *ctx;
    const quill_model *model;
    int n_seq, n_ctx, n_vocab;
    int n_batch;           /* rows one step takes at most (decoding rows first) */
    quill_batch batch;
    EngineJob **running;   /* by sequence; NULL: the sequence is free */
    EngineJob **queue;     /* waiting jobs: a ring [q_head, q_head + q_len) of ring_cap */
    int q_head, q_len, q_cap;
    int ring_cap;          /* q_cap + n_seq: a request may queue jobs that free slots take */
    float *scratch;        /* n_vocab floats: the log-softmax of a row */
    quill_token *seq_tokens; /* n_ctx tokens: what a sequence holds */
    const AdapterList *loras; /* the server's adapters; their scales are read under lock */
    bool lora_changed;     /* the scales changed: apply them once no job runs */
    pthread_mutex_t *lock; /* guards the queue, stopping, lora_changed and *stats */
    pthread_cond_t work;
    ServeStats *stats;
    bool stopping;
    bool joined;           /* engine_stop has waited for the thread */
    pthread_t thread;
    double rate_start;     /* tokens/s is measured over windows of about a second */
    unsigned long rate_tokens;
};

/* ---- events and feeds --------------------------------------------------------------- */

void engine_event_free(EngineEvent *ev)
{
    free(ev->text);
    free(ev->stages);
}

void feed_init(EngineFeed *f, int n_choices)
{
    memset(f, 0, sizeof *f);
    pthread_mutex_init(&f->lock, NULL);
    pthread_cond_init(&f->ready, NULL);
    f->n_open = n_choices;
}

void feed_push(EngineFeed *f, EngineEvent *ev)
{
    pthread_mutex_lock(&f->lock);
    Error err;
    if (f->head > 0 && f->head + f->len == f->cap) { /* slide the queue to the front */
        memmove(f->events, f->events + f->head, f->len * sizeof *f->events);
        f->head = 0;
    }
    if (buffer_reserve_items(&f->events, &f->cap, f->head + f->len + 1, sizeof *f->events, 16,
                             "events", &err) == 0) {
        f->events[f->head + f->len++] = *ev;
    } else {
        f->out_of_memory = true;
        engine_event_free(ev);
        if (ev->end && f->n_open > 0) /* the reader counts ends: count this one for it */
            f->n_open--;
    }
    pthread_cond_signal(&f->ready);
    pthread_mutex_unlock(&f->lock);
}

bool feed_next(EngineFeed *f, EngineEvent *ev)
{
    pthread_mutex_lock(&f->lock);
    while (f->len == 0 && f->n_open > 0)
        pthread_cond_wait(&f->ready, &f->lock);
    bool got = f->len > 0;
    if (got) {
        *ev = f->events[f->head++];
        f->len--;
        if (ev->end)
            f->n_open--;
    }
    pthread_mutex_unlock(&f->lock);
    return got;
}

void feed_cancel(EngineFeed *f)
{
    atomic_store(&f->cancelled, true);
}

void feed_close(EngineFeed *f)
{
    feed_cancel(f);
    EngineEvent ev;
    while (feed_next(f, &ev))
        engine_event_free(&ev);
    free(f->events);
    pthread_mutex_destroy(&f->lock);
    pthread_cond_destroy(&f->ready);
}

/* ---- jobs --------------------------------------------------------------------------- */

void engine_job_free(EngineJob *job)
{
    if (!job)
        return;
    free(job->prompt);
    quill_sampler_free(job->sampler);
    text_stream_free(&job->text);
    free(job->decided);
    free(job);
}

/* The text stream's sink: what one token decided, gathered for its event. */
static void job_decided(void *ctx, const char *bytes, size_t n)
{
    EngineJob *job = ctx;
    Error err;
    if (buffer_reserve(&job->decided, &job->cap_decided, job->n_decided + n + 1, 64, "text",
                       &err) != 0)
        return; /* the text is lost; the event still comes */
    memcpy(job->decided + job->n_decided, bytes, n);
    job->n_decided += n;
}

/* The text decided since the last call, as a new string for an event (NULL: none). */
static char *job_take_text(EngineJob *job, size_t *n)
{
    *n = job->n_decided;
    if (job->n_decided == 0)
        return NULL;
    char *text = malloc(job->n_decided + 1);
    if (text) {
        memcpy(text, job->decided, job->n_decided);
        text[job->n_decided] = '\0';
    } else {
        *n = 0;
    }
    job->n_decided = 0;
    return text;
}

/* A job's last event and its release: the text held back is let out, the sequence freed. */
static void job_end(Engine *e, EngineJob *job, EngineEvent *ev, quill_finish_reason finish)
{
    if (job->seq >= 0) /* a job that never started has no text */
        text_stream_finish(&job->text);
    size_t n;
    char *rest = job_take_text(job, &n);
    if (rest && ev->text) { /* the token's own text, then what was held back */
        char *both = realloc(ev->text, ev->n_text + n + 1);
        if (both) {
            memcpy(both + ev->n_text, rest, n + 1);
            ev->text = both;
            ev->n_text += n;
        }
        free(rest);
    } else if (rest) {
        ev->text = rest;
        ev->n_text = n;
    }
    ev->end = true;
    ev->finish = finish;
    ev->n_generated = job->n_generated;
    feed_push(job->feed, ev);
    if (job->seq >= 0) /* its cache stays, for a next prompt that starts the same */
        e->running[job->seq] = NULL;
    engine_job_free(job);
}

/* A job's end with no token of its own: cancelled, or nothing to generate. */
static void job_end_without_token(Engine *e, EngineJob *job, quill_finish_reason finish)
{
    job_end(e, job, &(EngineEvent){.choice = job->choice, .token = -1}, finish);
}

/* ---- one token ---------------------------------------------------------------------- */

/* The log-softmax of a row into e->scratch: logit - log(sum of exp(logits)), the sum taken
 * relative to the largest logit so that exp never overflows. */
static void log_softmax(Engine *e, const float *logits)
{
    float max = -INFINITY;
    for (int i = 0; i < e->n_vocab; i++)
        max = logits[i] > max ? logits[i] : max;
    double sum = 0;
    for (int i = 0; i < e->n_vocab; i++)
        sum += exp((double)logits[i] - max);
    float log_z = max + (float)log(sum);
    for (int i = 0; i < e->n_vocab; i++)
        e->scratch[i] = logits[i] - log_z;
}

/* The token's log-probability and the k most likely tokens (k <= ENGINE_MAX_TOP, by a
 * pass that keeps a small sorted list: k is tiny beside the vocabulary). */
static void event_logprobs(Engine *e, const float *logits, int k, EngineEvent *ev)
{
    log_softmax(e, logits);
    ev->logprob = e->scratch[ev->token];
    ev->n_top = 0;
    for (int i = 0; i < e->n_vocab && k > 0; i++) {
        float lp = e->scratch[i];
        if (ev->n_top == k && lp <= ev->top[k - 1].logprob)
            continue;
        int j = ev->n_top < k ? ev->n_top++ : k - 1;
        while (j > 0 && ev->top[j - 1].logprob < lp) {
            ev->top[j] = ev->top[j - 1];
            j--;
        }
        ev->top[j] = (EngineTop){i, lp};
    }
}

/* What each stage of the chain left at the last sample, copied out of the sampler. */
static void event_stages(const EngineJob *job, EngineEvent *ev)
{
    quill_stage_candidates stages[ENGINE_MAX_STAGES];
    int n = quill_sampler_stages(job->sampler, stages, ENGINE_MAX_STAGES);
    n = n < ENGINE_MAX_STAGES ? n : ENGINE_MAX_STAGES;
    ev->stages = calloc((size_t)(n > 0 ? n : 1), sizeof *ev->stages);
    if (!ev->stages)
        return;
    for (int i = 0; i < n; i++) {
        EngineStage *st = &ev->stages[i];
        snprintf(st->name, sizeof st->name, "%s", stages[i].stage);
        st->n_survivors = stages[i].n_survivors;
        st->n_top = stages[i].n_top < ENGINE_MAX_TRACE ? stages[i].n_top : ENGINE_MAX_TRACE;
        memcpy(st->top, stages[i].top, (size_t)st->n_top * sizeof *st->top);
    }
    ev->n_stages = n;
}

/* The token's bytes into the job's text stream; 1 when a stop string completed. A control
 * token (a chat turn's end, say) writes nothing, as in quill generate. */
static int job_push_text(EngineJob *job, const quill_model *m, quill_token token)
{
    if (quill_token_is_control(m, token))
        return 0;
    char piece[256];
    int n = quill_token_to_piece(m, token, piece, sizeof piece);
    n = n < (int)sizeof piece ? n : (int)sizeof piece;
    Error err;
    return n > 0 ? text_stream_push(&job->text, piece, (size_t)n, &err) : 0;
}

/* After the pass: the job's next token from its logits, its event, and whether the choice
 * is over (then the job is released). */
static void job_sample(Engine *e, EngineJob *job, const float *logits)
{
    quill_token token = quill_sampler_sample(job->sampler, logits);
    quill_sampler_accept(job->sampler, token, false);
    EngineEvent ev = {.choice = job->choice, .token = token, .logprob = NAN};
    if (job->top_logprobs >= 0)
        event_logprobs(e, logits, job->top_logprobs, &ev);
    if (job->trace)
        event_stages(job, &ev);
    if (quill_token_is_end(e->model, token) && !job->ignore_eos) {
        ev.token = -1; /* the end token has no text and is not counted */
        job_end(e, job, &ev, QUILL_FINISH_EOS);
        return;
    }
    job->n_generated++;
    int stopped = job_push_text(job, e->model, token);
    ev.text = job_take_text(job, &ev.n_text);
    if (stopped == 1)
        job_end(e, job, &ev, QUILL_FINISH_STOP);
    else if (job->n_generated >= job->max_tokens)
        job_end(e, job, &ev, QUILL_FINISH_LENGTH);
    else if (quill_seq_length(e->ctx, job->seq) >= e->n_ctx) /* no room to run it */
        job_end(e, job, &ev, QUILL_FINISH_CONTEXT);
    else if (atomic_load(&job->feed->cancelled))
        job_end(e, job, &ev, QUILL_FINISH_CANCELLED);
    else {
        job->next = token;
        feed_push(job->feed, &ev);
    }
}

/* ---- one step ----------------------------------------------------------------------- */

/* The batch: one row per decoding sequence, then prompt chunks in sequence order while the
 * budget lasts; a job whose prompt ends in this batch asks for its last row's logits. */
static void step_build(Engine *e)
{
    quill_batch *b = &e->batch;
    quill_batch_clear(b);
    for (int s = 0; s < e->n_seq; s++) {
        EngineJob *job = e->running[s];
        if (!job)
            continue;
        job->row = -1;
        if (job->n_taken == job->n_prompt) {
            job->row = b->n_tokens;
            quill_batch_add(b, job->next, quill_seq_length(e->ctx, s), s, true);
        }
    }
    for (int s = 0; s < e->n_seq && b->n_tokens < e->n_batch; s++) {
        EngineJob *job = e->running[s];
        if (!job || job->n_taken == job->n_prompt)
            continue;
        int pos = quill_seq_length(e->ctx, s);
        int k = job->n_prompt - job->n_taken;
        k = k < e->n_batch - b->n_tokens ? k : e->n_batch - b->n_tokens;
        for (int i = 0; i < k; i++) {
            bool last = job->n_taken + i == job->n_prompt - 1;
            if (last)
                job->row = b->n_tokens;
            quill_batch_add(b, job->prompt[job->n_taken + i], pos + i, s, last);
        }
        job->n_taken += k;
    }
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The counters after a step: tokens generated, and tokens/s over windows of a second. */
static void stats_after_step(Engine *e, unsigned long generated)
{
    double now = now_seconds();
    pthread_mutex_lock(e->lock);
    e->stats->generated_tokens += generated;
    e->rate_tokens += generated;
    if (now - e->rate_start >= 1.0) {
        e->stats->tokens_per_second = e->rate_tokens / (now - e->rate_start);
        e->rate_start = now;
        e->rate_tokens = 0;
    }
    pthread_mutex_unlock(e->lock);
}

/* One forward pass for every running job, then a token for each that asked for logits. A
 * pass that fails (it should not: positions and room are checked) ends its jobs. */
static void step_run(Engine *e)
{
    step_build(e);
    if (e->batch.n_tokens == 0)
        return;
    bool ok = quill_decode(e->ctx, &e->batch) == QUILL_OK;
    unsigned long generated = 0;
    for (int s = 0; s < e->n_seq; s++) {
        EngineJob *job = e->running[s];
        if (!job)
            continue;
        if (!ok || (atomic_load(&job->feed->cancelled) && job->row < 0)) {
            job_end_without_token(e, job, QUILL_FINISH_CANCELLED);
        } else if (job->row >= 0) {
            job_sample(e, job, quill_logits(e->ctx, job->row));
            generated++;
        }
    }
    stats_after_step(e, generated);
}

/* ---- the queue ---------------------------------------------------------------------- */

/* How many of the job's first prompt tokens sequence seq holds already: what a free
 * sequence keeps from its last request (its prompt and text) is reused when the new prompt
 * starts the same way, as llama-server's cache_prompt does (a conversation's next turn, the
 * same system prompt, a retry). At least the prompt's last token is run again, for the
 * logits that choose the first new token. */
static int cached_prefix(Engine *e, const EngineJob *job, int seq)
{
    if (job->no_cache)
        return 0;
    int n = quill_seq_tokens(e->ctx, seq, e->seq_tokens, e->n_ctx);
    int limit = job->n_prompt - 1 < n ? job->n_prompt - 1 : n;
    int same = 0;
    while (same < limit && e->seq_tokens[same] == job->prompt[same])
        same++;
    return same;
}

/* The free sequence that holds the longest start of the job's prompt (-1: none free). */
static int best_free_seq(Engine *e, const EngineJob *job, int *cached)
{
    int best = -1;
    *cached = -1;
    for (int s = 0; s < e->n_seq; s++) {
        if (e->running[s])
            continue;
        int same = cached_prefix(e, job, s);
        if (same > *cached) {
            best = s;
            *cached = same;
        }
    }
    return best;
}

/* A job takes a free sequence, which keeps the `cached` positions its prompt shares and
 * forgets the rest; the whole prompt goes into the job's sampler's history (the penalties
 * count it, as quill generate's do). Under the lock. */
static void job_start(Engine *e, EngineJob *job, int seq, int cached)
{
    job->seq = seq;
    job->n_taken = cached;
    job->n_generated = 0;
    text_stream_init(&job->text, job->stops, job->n_stops, job_decided, job);
    for (int i = 0; i < job->n_prompt; i++)
        quill_sampler_accept(job->sampler, job->prompt[i], true);
    quill_seq_truncate(e->ctx, seq, cached, -1);
    e->running[seq] = job;
    e->stats->prompt_tokens += (unsigned long)job->n_prompt;
    e->stats->prompt_tokens_cached += (unsigned long)cached;
}

/* Moves waiting jobs into free sequences, dropping those whose client is gone; none while
 * new adapter scales wait. Under the lock; returns the number of running jobs. */
static int queue_admit(Engine *e)
{
    while (e->q_len > 0 && !e->lora_changed) { /* new scales wait for the running jobs */
        EngineJob *job = e->queue[e->q_head];
        int cached;
        int seq = best_free_seq(e, job, &cached);
        if (seq < 0 && !atomic_load(&job->feed->cancelled))
            break;
        e->q_head = (e->q_head + 1) % e->ring_cap;
        e->q_len--;
        job->seq = -1;
        if (atomic_load(&job->feed->cancelled))
            job_end_without_token(e, job, QUILL_FINISH_CANCELLED);
        else if (job->max_tokens == 0) /* nothing to generate: no need of a slot */
            job_end_without_token(e, job, QUILL_FINISH_LENGTH);
        else
            job_start(e, job, seq, cached);
    }
    int running = 0;
    for (int s = 0; s < e->n_seq; s++)
        running += e->running[s] != NULL;
    e->stats->slots_active = running;
    e->stats->queue_length = e->q_len;
    return running;
}

/* Every job, running or waiting, ends as cancelled: the server is stopping. */
static void end_all(Engine *e)
{
    for (int s = 0; s < e->n_seq; s++)
        if (e->running[s])
            job_end_without_token(e, e->running[s], QUILL_FINISH_CANCELLED);
    for (; e->q_len > 0; e->q_len--, e->q_head = (e->q_head + 1) % e->ring_cap) {
        EngineJob *job = e->queue[e->q_head];
        job->seq = -1;
        job_end_without_token(e, job, QUILL_FINISH_CANCELLED);
    }
}

/* The adapters' new scales on the context, between passes with no job running, so that a
 * change applies to whole jobs: those that ran before it, those admitted after. The
 * sequences' caches are forgotten, since their keys and values were computed at the old
 * scales and a later prompt must not reuse them. Under the lock. */
static void lora_apply(Engine *e)
{
    if (adapter_list_apply(e->loras, e->ctx) != QUILL_OK)
        fprintf(stderr, "quill serve: the new LoRA scales: %s\n", quill_last_error());
    for (int s = 0; s < e->n_seq; s++)
        quill_seq_clear(e->ctx, s);
    e->lora_changed = false;
}

void engine_lora_changed(Engine *e)
{
    e->lora_changed = true;
    pthread_cond_signal(&e->work);
}

static void *engine_run(void *arg)
{
    Engine *e = arg;
    pthread_mutex_lock(e->lock);
    for (;;) {
        int running = queue_admit(e);
        if (e->stopping)
            break;
        if (running == 0 && e->lora_changed) {
            lora_apply(e);
            continue;
        }
        if (running == 0) {
            pthread_cond_wait(&e->work, e->lock);
            continue;
        }
        pthread_mutex_unlock(e->lock);
        step_run(e);
        pthread_mutex_lock(e->lock);
    }
    end_all(e);
    e->stats->slots_active = 0;
    e->stats->queue_length = 0;
    pthread_mutex_unlock(e->lock);
    return NULL;
}

int engine_submit(Engine *e, EngineJob **jobs, int n)
{
    pthread_mutex_lock(e->lock);
    /* the jobs that would wait: those queued and these, less the slots free now */
    int waiting = e->q_len + n - (e->n_seq - e->stats->slots_active);
    int status = e->stopping                ? ENGINE_STOPPING
                 : n > e->n_seq + e->q_cap  ? ENGINE_TOO_MANY
                 : waiting > e->q_cap       ? ENGINE_FULL
                                            : 0;
    bool room = status == 0;
    if (room) {
        for (int i = 0; i < n; i++)
            e->queue[(e->q_head + e->q_len++) % e->ring_cap] = jobs[i];
        e->stats->requests++;
        e->stats->queue_length = e->q_len;
        pthread_cond_signal(&e->work);
    } else if (status != ENGINE_TOO_MANY) {
        e->stats->requests_rejected++;
    }
    pthread_mutex_unlock(e->lock);
    return status;
}

/* ---- start and stop ----------------------------------------------------------------- */

void engine_free(Engine *e)
{
    if (!e)
        return;
    quill_batch_free(&e->batch);
    free(e->running);
    free(e->queue);
    free(e->scratch);
    free(e->seq_tokens);
    pthread_cond_destroy(&e->work);
    free(e);
}

Engine *engine_start(const quill_model *model, quill_context *ctx, const AdapterList *loras,
                     int queue_cap, int n_batch, pthread_mutex_t *lock, ServeStats *stats,
                     Error *err)
{
    Engine *e = calloc(1, sizeof *e);
    if (!e) {
        error_set(err, "out of memory");
        return NULL;
    }
    e->ctx = ctx;
    e->model = model;
    e->loras = loras;
    e->n_seq = quill_context_n_seq(ctx);
    e->n_ctx = quill_context_n_ctx(ctx);
    e->n_vocab = quill_model_vocab_size(e->model);
    e->n_batch = n_batch > e->n_seq ? n_batch : e->n_seq;
    e->q_cap = queue_cap;
    e->lock = lock;
    e->stats = stats;
    e->rate_start = now_seconds();
    pthread_cond_init(&e->work, NULL);
    e->batch = quill_batch_new(e->n_batch + e->n_seq);
    e->running = calloc((size_t)e->n_seq, sizeof *e->running);
    e->ring_cap = queue_cap + e->n_seq;
    e->queue = calloc((size_t)e->ring_cap, sizeof *e->queue);
    e->scratch = malloc((size_t)e->n_vocab * sizeof *e->scratch);
    e->seq_tokens = malloc((size_t)e->n_ctx * sizeof *e->seq_tokens);
    if (!e->batch.token || !e->running || !e->queue || !e->scratch || !e->seq_tokens) {
        engine_free(e);
        error_set(err, "out of memory");
        return NULL;
    }
    if (pthread_create(&e->thread, NULL, engine_run, e) != 0) {
        engine_free(e);
        error_set(err, "cannot start the engine's thread");
        return NULL;
    }
    return e;
}

void engine_stop(Engine *e)
{
    if (e->joined)
        return;
    pthread_mutex_lock(e->lock);
    e->stopping = true;
    pthread_cond_signal(&e->work);
    pthread_mutex_unlock(e->lock);
    pthread_join(e->thread, NULL);
    e->joined = true;
}

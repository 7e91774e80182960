/* quill serve's engine: continuous batching.
 *
 * One context holds --parallel sequences. One thread, the engine, runs a loop of steps;
 * each step is ONE forward pass (quill_decode) over a batch that holds
 *   - one row for every sequence that is generating: its last token, at its next position;
 *   - then chunks of the prompts being taken in, up to the batch's budget of rows,
 * so a new request's prompt goes in while the others keep decoding, a long prompt is split
 * over several steps instead of freezing the streams, and the weights are read once per
 * step for every sequence.
 *
 * The unit of work is a job: one choice of one request (a request with n = 3 and two
 * prompts is six jobs). Jobs wait in a bounded queue until a sequence is free. After the
 * pass, every job that asked for logits samples its next token with its own sampler, and
 * what the token decided (its text, whole UTF-8 characters with stop strings held back, as
 * `quill generate` writes it) goes to the job's feed as an event. The request's own thread
 * (the HTTP connection's, or its stream's) reads the feed and writes JSON: the engine never
 * waits for a client.
 *
 *   request thread                    engine thread
 *   --------------                    -------------
 *   jobs made, engine_submit  ----->  queue -> free sequence -> prompt chunks -> decoding
 *   feed_next (blocks)        <-----  events: token, text, logprobs, trace; end + reason
 *   feed_cancel (client gone) ----->  the job ends at the next step, its sequence is freed
 */
#ifndef QUILL_GENERATE_SERVE_ENGINE_H
#define QUILL_GENERATE_SERVE_ENGINE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "error.h"
#include "quill.h"
#include "serve.h"
#include "stream.h"

enum {
    ENGINE_MAX_TOP = 20,   /* top log-probabilities per token (OpenAI's limit for chat) */
    ENGINE_MAX_TRACE = 8,  /* quill_trace: candidates per stage (quill_sampler_trace's) */
    ENGINE_MAX_STAGES = 16,
    ENGINE_STAGE_NAME = 24,
};

typedef struct {
    quill_token token;
    float logprob;
} EngineTop;

/* One stage of the sampler chain as the trace saw it: its name, how many candidates it
 * left and the most likely of them (quill_stage_candidates, copied out of the sampler). */
typedef struct {
    char name[ENGINE_STAGE_NAME];
    int n_survivors;
    int n_top;
    quill_candidate top[ENGINE_MAX_TRACE];
} EngineStage;

/* What one step brought one choice: a token and the text it decided, and at the end (end =
 * true) why the choice is over. The last token's event may also be the end. */
typedef struct {
    int choice;
    quill_token token;         /* -1: none (the end alone) */
    char *text;                /* the text decided by this token (malloc'd; NULL: none) */
    size_t n_text;
    float logprob;             /* the token's log-probability in the model's distribution
                                  (log-softmax of the logits, before any sampler stage) */
    int n_top;                 /* the most likely tokens at that step, most likely first */
    EngineTop top[ENGINE_MAX_TOP];
    int n_stages;              /* quill_trace: the chain's stages (stages malloc'd) */
    EngineStage *stages;
    bool end;
    quill_finish_reason finish;
    int n_generated;           /* at the end: the choice's tokens (an end token not counted) */
    uint64_t missed;           /* at a beam's end: the request's must_include words its text
                                  lacks, bit i for word i (quill_beam_result's) */
} EngineEvent;

void engine_event_free(EngineEvent *ev);

/* The events of one request's choices, in the order the engine made them. The request's
 * thread owns it; the engine's jobs point to it until their end events. */
typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t ready;
    EngineEvent *events; /* a queue: [head, head + len) */
    size_t head, len, cap;
    int n_open;          /* choices whose end event has not been read yet */
    atomic_bool cancelled;
    bool out_of_memory;  /* an event was lost: the request answers 500 */
} EngineFeed;

void feed_init(EngineFeed *f, int n_choices);
/* Appends an event (the feed takes its text and stages); an event that cannot be kept
 * is dropped and the request told (out_of_memory), but an end is never lost. */
void feed_push(EngineFeed *f, EngineEvent *ev);
/* The next event, waiting for it; false once every choice's end has been read. */
bool feed_next(EngineFeed *f, EngineEvent *ev);
/* The client is gone: the engine ends the choices at its next step (their end events
 * still come, with QUILL_FINISH_CANCELLED). */
void feed_cancel(EngineFeed *f);
/* Reads and drops the events until every choice has ended, then frees the feed. */
void feed_close(EngineFeed *f);

/* One choice to generate. The caller allocates it zeroed (calloc), fills the first part
 * and hands it to engine_submit, which owns it from then on (it is freed at its end). */
typedef struct {
    EngineFeed *feed;
    int choice;
    quill_token *prompt;   /* malloc'd, owned */
    int n_prompt;
    quill_sampler *sampler; /* owned */
    int max_tokens;
    bool ignore_eos;       /* llama-server's: the end-of-text token is taken like any other */
    bool no_cache;         /* llama-server's cache_prompt false: run the whole prompt even
                              when a free slot holds its start */
    char *const *stops;    /* borrowed from the request, which outlives its jobs */
    int n_stops;
    int top_logprobs;      /* -1: no log-probabilities; else the top count (0..20) */
    int trace;             /* quill_trace: candidates per stage, 0: off */

    /* the engine's */
    int seq;
    int n_taken;           /* prompt tokens decoded so far */
    int n_generated;
    int row;               /* its logits' row in this step's batch, -1: none */
    quill_token next;      /* the token sampled last, to decode at the next step */
    TextStream text;
    char *decided;         /* what the text stream let out during the current token */
    size_t n_decided, cap_decided;
} EngineJob;

typedef struct Engine Engine;

/* Starts the engine thread on ctx (whose sequences are the slots), which applies loras
 * (the server's, already applied to ctx); the queue holds at most queue_cap waiting jobs.
 * Counters go to stats under *lock. */
Engine *engine_start(const quill_model *model, quill_context *ctx, const AdapterList *loras,
                     int queue_cap, int n_batch, pthread_mutex_t *lock, ServeStats *stats,
                     Error *err);
/* The adapters' scales changed (the caller changed them under *lock, and holds it): the
 * engine lets the running jobs finish, admitting none meanwhile, then applies the new
 * scales and forgets the cached prompts, so that every job runs at one set of scales. */
void engine_lora_changed(Engine *e);
enum { ENGINE_FULL = -1, ENGINE_STOPPING = -2, ENGINE_TOO_MANY = -3 };

/* Queues jobs[0..n) as one request (all or none). 0, or: ENGINE_FULL when more jobs would
 * wait than the queue holds (the slots free now take the first ones), ENGINE_TOO_MANY when
 * n is more than the slots and the queue together (never possible), ENGINE_STOPPING after
 * engine_stop. The jobs are then still the caller's. */
int engine_submit(Engine *e, EngineJob **jobs, int n);
/* Ends every job (finish "cancelled") and stops the thread; later submits are refused.
 * A second call does nothing. */
void engine_stop(Engine *e);
void engine_free(Engine *e); /* after engine_stop; NULL-safe */

/* A job's own parts, freed (NULL-safe): for a caller whose engine_submit failed. */
void engine_job_free(EngineJob *job);

#endif

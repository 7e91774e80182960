/* quill serve: an HTTP server for a model, with llama-server's and OpenAI's endpoints.
 *
 * serve.c is the HTTP side (libmicrohttpd: the daemon, the request body, routing, auth,
 * the error bodies); serve_api.c is what each endpoint does with the public API (quill.h):
 * its JSON request read and checked field by field, and its JSON answer. */
#ifndef QUILL_GENERATE_SERVE_H
#define QUILL_GENERATE_SERVE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

#include "error.h"
#include "adapters.h"
#include "quill.h"

/* quill serve MODEL: serve the model until SIGINT or SIGTERM. */
int cmd_serve(int argc, char **argv, Error *err);

/* What /metrics reports (Prometheus text). The counters only grow; the gauges are now. The
 * generating side updates them under Server.lock; serve_stats_read copies them out. */
typedef struct {
    unsigned long requests;          /* completions and chat completions accepted */
    unsigned long requests_rejected; /* answered 503: the queue was full or the server stopping */
    unsigned long prompt_tokens;     /* prompt tokens taken in */
    unsigned long prompt_tokens_cached; /* of those, found in a slot's cache already */
    unsigned long generated_tokens;  /* tokens generated, over every choice */
    double tokens_per_second;        /* generated tokens per second over the last few steps */
    int slots_active;                /* sequences generating now */
    int slots_total;                 /* --parallel */
    int queue_length;                /* choices waiting for a sequence */
} ServeStats;

typedef struct Engine Engine; /* serve_engine.h: continuous batching */

typedef struct {
    quill_model *model;
    AdapterList loras;    /* --lora's adapters: every context the server makes applies them */
    const char *model_id; /* what /v1/models and every answer call it: the file's name */
    quill_context *ctx;   /* one sequence per slot (--parallel), decoded together */
    Engine *engine;       /* the thread that steps them */
    int n_slots;
    int queue_cap;        /* choices that may wait for a slot (--queue) */
    int n_ctx;            /* positions per sequence */
    pthread_mutex_t lock; /* guards n_streams, stats, the engine's queue, loras.scales */
    pthread_cond_t changed;
    int n_streams;        /* streams whose threads still write */
    volatile int stopping; /* set on SIGINT/SIGTERM */
    ServeStats stats;      /* guarded by lock */
    quill_context *embed_ctx;    /* /v1/embeddings' own context: one sequence */
    pthread_mutex_t embed_lock;  /* one embedding request at a time on it */
} Server;

/* A copy of the server's counters, taken under its lock. */
ServeStats serve_stats_read(Server *s);

/* What an endpoint answers: a status and a JSON body; or (stream_fd >= 0) a stream of
 * Server-Sent Events read from that pipe, written by a thread the endpoint started; or
 * (raw) text of the given content type (/metrics). */
typedef struct {
    int status;
    cJSON *body;
    int stream_fd;
    char *raw; /* malloc'd */
    size_t n_raw;
    const char *content_type;
} ServeReply;

/* An OpenAI error: the HTTP status, the field it is about (NULL: none) and the message. */
typedef struct {
    int status;
    const char *param;
    Error err;
} ApiError;

/* The endpoints. Each reads the request body (body[0..len), not NUL-terminated) and
 * returns 0 with the reply filled, or -1 with e filled. */
int serve_health(Server *s, const char *body, size_t len, ServeReply *r, ApiError *e);
int serve_models(Server *s, const char *body, size_t len, ServeReply *r, ApiError *e);
int serve_tokenize(Server *s, const char *body, size_t len, ServeReply *r, ApiError *e);
int serve_detokenize(Server *s, const char *body, size_t len, ServeReply *r, ApiError *e);
int serve_completions(Server *s, const char *body, size_t len, ServeReply *r, ApiError *e);
int serve_chat_completions(Server *s, const char *body, size_t len, ServeReply *r, ApiError *e);
int serve_embeddings(Server *s, const char *body, size_t len, ServeReply *r, ApiError *e);
int serve_metrics(Server *s, const char *body, size_t len, ServeReply *r, ApiError *e);

/* llama-server's GET /lora-adapters ([{"id", "path", "scale"}]) and POST /lora-adapters
 * ([{"id", "scale"}]: the scales from the next job on; an adapter not named gets 0). */
int serve_lora_list(Server *s, const char *body, size_t len, ServeReply *r, ApiError *e);
int serve_lora_set(Server *s, const char *body, size_t len, ServeReply *r, ApiError *e);

/* A context of s's model with s's adapters at their scales now (every endpoint answers as
 * the adapted model): NULL on error, with the message in quill_last_error. */
quill_context *serve_context_new(Server *s, const quill_context_params *cp);
/* s's adapters at their scales now on c (QUILL_OK, or the error in quill_last_error). */
int serve_lora_apply(Server *s, quill_context *c);

/* Creates /v1/embeddings' context (n_ctx positions, 0: the model's) and its lock. */
int serve_embeddings_open(Server *s, int n_ctx, int n_threads, Error *err);

/* The playground page's files (serve_page.c), compiled into the binary: a URL's entry,
 * NULL for any other URL. */
typedef struct {
    const char *url;
    const unsigned char *bytes;
    size_t size;
    const char *content_type;
} ServePage;

const ServePage *serve_page_find(const char *url);

/* Sets e and returns -1, for `return serve_error(e, 400, "temperature", "...")`. */
int serve_error(ApiError *e, int status, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* {"error": {"message", "type", "param", "code"}} for e. */
cJSON *serve_error_body(const ApiError *e);

#endif

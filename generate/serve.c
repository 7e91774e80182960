/* quill serve: the HTTP side. libmicrohttpd parses HTTP and runs one thread per connection;
 * this file collects each request's body (refusing one over --max-body), checks the API
 * key, routes the request to its endpoint (serve_api.c) and sends the reply: a JSON body,
 * text (/metrics, the playground page's files), or Server-Sent Events read from a pipe that
 * a generating thread writes. */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>

#include "buffer.h"
#include "cli.h"
#include "loader.h"
#include "serve.h"
#include "serve_engine.h"

typedef struct {
    const char *host;
    int port;
    int parallel;
    int context;
    const char *api_key;
    int threads;
    int max_body;
    const char *cors;
    int timeout;
    int queue;
    int batch;
    const char *cache_type; /* NULL: the model's default, as quill generate */
    StringList lora;        /* LoRA adapter files, all applied */
    StringList lora_scale;  /* the i-th scales the i-th of lora (default 1) */
} ServeOptions;

typedef struct {
    Server server;
    const char *api_key;
    size_t max_body;
    const char *cors; /* the origin browsers' pages may call from, or NULL */
} ServeDaemon;

/* One request's body as it arrives in pieces; too_large once it passed --max-body (the rest
 * is read and dropped, so that the client gets its 413 instead of a reset connection). */
typedef struct {
    char *body;
    size_t len, cap;
    bool too_large;
} RequestBody;

typedef int (*Endpoint)(Server *s, const char *body, size_t len, ServeReply *r, ApiError *e);

typedef struct {
    const char *method;
    const char *path;
    Endpoint run;
    bool needs_key; /* false for /health, which load balancers poll without a key */
} Route;

static const Route ROUTES[] = {
    {"GET", "/health", serve_health, false},
    {"GET", "/v1/models", serve_models, true},
    {"POST", "/tokenize", serve_tokenize, true},
    {"POST", "/detokenize", serve_detokenize, true},
    {"POST", "/v1/completions", serve_completions, true},
    {"POST", "/v1/chat/completions", serve_chat_completions, true},
    {"POST", "/v1/embeddings", serve_embeddings, true},
    {"GET", "/metrics", serve_metrics, true},
    {"GET", "/lora-adapters", serve_lora_list, true},
    {"POST", "/lora-adapters", serve_lora_set, true},
};
enum { N_ROUTES = sizeof ROUTES / sizeof *ROUTES };

int serve_error(ApiError *e, int status, const char *param, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->err.msg, sizeof e->err.msg, fmt, ap);
    va_end(ap);
    e->status = status;
    e->param = param;
    return -1;
}

/* OpenAI's error types by status; the code is the status, as llama-server sends it. */
static const char *error_type(int status)
{
    switch (status) {
    case 401:
        return "authentication_error";
    case 404:
        return "not_found_error";
    case 503:
        return "unavailable_error";
    case 500:
        return "server_error";
    default:
        return "invalid_request_error";
    }
}

cJSON *serve_error_body(const ApiError *e)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *error = cJSON_AddObjectToObject(root, "error");
    cJSON_AddStringToObject(error, "message", e->err.msg);
    cJSON_AddStringToObject(error, "type", error_type(e->status));
    if (e->param)
        cJSON_AddStringToObject(error, "param", e->param);
    else
        cJSON_AddNullToObject(error, "param");
    cJSON_AddNumberToObject(error, "code", e->status);
    return root;
}

/* Queues a response with its content type (and, with --cors, the origin allowed to read
 * it) and lets go of it: libmicrohttpd frees it once sent. */
static enum MHD_Result queue(const ServeDaemon *d, struct MHD_Connection *c, int status,
                             struct MHD_Response *resp, const char *content_type)
{
    if (!resp)
        return MHD_NO;
    if (content_type)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    if (d->cors)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ACCESS_CONTROL_ALLOW_ORIGIN, d->cors);
    enum MHD_Result ok = MHD_queue_response(c, (unsigned)status, resp);
    MHD_destroy_response(resp);
    return ok;
}

static enum MHD_Result send_json(const ServeDaemon *d, struct MHD_Connection *c, int status,
                                 cJSON *body)
{
    char *text = cJSON_PrintUnformatted(body);
    cJSON_Delete(body);
    if (!text)
        return MHD_NO;
    return queue(d, c, status,
                 MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE),
                 "application/json");
}

static enum MHD_Result send_error(const ServeDaemon *d, struct MHD_Connection *c, ApiError *e)
{
    cJSON *body = serve_error_body(e);
    char *text = cJSON_PrintUnformatted(body);
    cJSON_Delete(body);
    if (!text)
        return MHD_NO;
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    if (resp && e->status == MHD_HTTP_SERVICE_UNAVAILABLE) /* busy: a client may come back */
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, "1");
    return queue(d, c, e->status, resp, "application/json");
}

/* GET of a playground file (no key: a browser loads the page before it can send one). Its
 * bytes are the program's own, for as long as it runs: libmicrohttpd sends them as they are
 * (RESPMEM_PERSISTENT), never writing or freeing them, though its API takes a void *. */
static enum MHD_Result answer_page(ServeDaemon *d, struct MHD_Connection *c,
                                   const ServePage *page, const char *method)
{
    if (strcmp(method, "GET") != 0) {
        ApiError e = {0};
        serve_error(&e, 405, NULL, "%s does not take %s", page->url, method);
        return send_error(d, c, &e);
    }
    return queue(d, c, MHD_HTTP_OK,
                 MHD_create_response_from_buffer(page->size, (void *)page->bytes,
                                                 MHD_RESPMEM_PERSISTENT),
                 page->content_type);
}

/* A reply's text (r->raw, malloc'd: libmicrohttpd frees it once sent). */
static enum MHD_Result send_raw(const ServeDaemon *d, struct MHD_Connection *c, ServeReply *r)
{
    return queue(d, c, r->status,
                 MHD_create_response_from_buffer(r->n_raw, r->raw, MHD_RESPMEM_MUST_FREE),
                 r->content_type);
}

static enum MHD_Result send_stream(const ServeDaemon *d, struct MHD_Connection *c, int fd)
{
    struct MHD_Response *resp = MHD_create_response_from_pipe(fd);
    if (!resp) {
        close(fd);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    return queue(d, c, MHD_HTTP_OK, resp, "text/event-stream");
}

/* With --cors, a browser asks first (a "preflight" OPTIONS request) whether a page from
 * another origin may POST JSON with an Authorization header: yes, for the origin named. */
static enum MHD_Result answer_preflight(const ServeDaemon *d, struct MHD_Connection *c)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(0, "", MHD_RESPMEM_PERSISTENT);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_ACCESS_CONTROL_ALLOW_METHODS,
                            "GET, POST, OPTIONS");
    MHD_add_response_header(resp, "Access-Control-Allow-Headers", "Authorization, Content-Type");
    MHD_add_response_header(resp, "Access-Control-Max-Age", "600");
    return queue(d, c, MHD_HTTP_NO_CONTENT, resp, NULL);
}

/* Compares the whole of both strings whatever they hold, so that the time an answer takes
 * says nothing about how much of a guessed key was right. */
static bool same_secret(const char *a, const char *b)
{
    size_t na = strlen(a), nb = strlen(b);
    unsigned char diff = (unsigned char)(na != nb);
    for (size_t i = 0; i < na; i++)
        diff |= (unsigned char)(a[i] ^ b[i % (nb ? nb : 1)]);
    return diff == 0;
}

static bool key_accepted(struct MHD_Connection *c, const char *api_key)
{
    const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    const char *bearer = "Bearer ";
    if (!auth || strncmp(auth, bearer, strlen(bearer)) != 0)
        return false;
    return same_secret(auth + strlen(bearer), api_key);
}

static const Route *route_find(const char *method, const char *url, bool *path_known)
{
    *path_known = false;
    for (int i = 0; i < N_ROUTES; i++) {
        if (strcmp(ROUTES[i].path, url) != 0)
            continue;
        *path_known = true;
        if (strcmp(ROUTES[i].method, method) == 0)
            return &ROUTES[i];
    }
    return NULL;
}

static enum MHD_Result answer(ServeDaemon *d, struct MHD_Connection *c, const char *url,
                              const char *method, const RequestBody *rb)
{
    const ServePage *page = serve_page_find(url);
    if (page && d->cors && strcmp(method, "OPTIONS") == 0)
        return answer_preflight(d, c);
    if (page)
        return answer_page(d, c, page, method);
    ApiError e = {0};
    bool path_known;
    const Route *route = route_find(method, url, &path_known);
    if (path_known && d->cors && strcmp(method, "OPTIONS") == 0)
        return answer_preflight(d, c);
    if (!path_known)
        serve_error(&e, 404, NULL, "no endpoint %s", url);
    else if (!route)
        serve_error(&e, 405, NULL, "%s does not take %s", url, method);
    else if (route->needs_key && d->api_key && !key_accepted(c, d->api_key))
        serve_error(&e, 401, NULL, "a valid API key is needed: Authorization: Bearer KEY");
    else if (rb->too_large)
        serve_error(&e, 413, NULL, "the request body is over the limit of %zu bytes "
                    "(--max-body)", d->max_body);
    if (e.status)
        return send_error(d, c, &e);
    ServeReply r = {.status = 200, .stream_fd = -1};
    if (route->run(&d->server, rb->body ? rb->body : "", rb->len, &r, &e) != 0)
        return send_error(d, c, &e);
    if (r.raw)
        return send_raw(d, c, &r);
    return r.stream_fd >= 0 ? send_stream(d, c, r.stream_fd) : send_json(d, c, r.status, r.body);
}

/* libmicrohttpd calls this once when the headers are in, once per piece of the body, and
 * once more with no data when the body is complete: then the request is answered. */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    ServeDaemon *d = cls;
    RequestBody *rb = *con_cls;
    if (!rb) {
        rb = calloc(1, sizeof *rb);
        *con_cls = rb;
        return rb ? MHD_YES : MHD_NO;
    }
    if (*upload_data_size > 0) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (rb->too_large || rb->len + n > d->max_body) {
            rb->too_large = true;
            return MHD_YES;
        }
        Error err;
        if (buffer_reserve(&rb->body, &rb->cap, rb->len + n + 1, 4096, "request", &err) != 0)
            return MHD_NO;
        memcpy(rb->body + rb->len, upload_data, n);
        rb->len += n;
        return MHD_YES;
    }
    return answer(d, c, url, method, rb);
}

static void on_request_done(void *cls, struct MHD_Connection *c, void **con_cls,
                            enum MHD_RequestTerminationCode toe)
{
    RequestBody *rb = *con_cls;
    if (rb)
        free(rb->body);
    free(rb);
    *con_cls = NULL;
}

/* One of KV_CACHE_TYPE_NAMES as the public API's cache type (NULL: the model's default). */
static quill_cache_type cache_type_of(const char *name)
{
    if (!name)
        return QUILL_CACHE_DEFAULT;
    return strcmp(name, "f32") == 0   ? QUILL_CACHE_F32
           : strcmp(name, "f16") == 0 ? QUILL_CACHE_F16
                                      : QUILL_CACHE_Q8_0;
}

/* The model with its adapters, one context with a sequence per slot, and the engine that
 * decodes them. */
static int server_open(Server *s, const char *path, const ServeOptions *o, Error *err)
{
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->changed, NULL);
    quill_model_params mp = quill_model_params_default();
    mp.n_threads = o->threads;
    s->model = quill_model_load(path, &mp);
    if (!s->model)
        return error_set(err, "%s", quill_last_error());
    if (adapter_list_load(&s->loras, &o->lora, &o->lora_scale, s->model, err) != 0)
        return -1;
    const char *slash = strrchr(path, '/');
    s->model_id = slash && slash[1] ? slash + 1 : path;
    quill_context_params cp = quill_context_params_default();
    cp.n_ctx = o->context;
    cp.n_seq = o->parallel;
    cp.n_batch = o->batch;
    cp.n_threads = o->threads;
    cp.cache_type = cache_type_of(o->cache_type);
    s->ctx = serve_context_new(s, &cp);
    if (!s->ctx)
        return error_set(err, "%s", quill_last_error());
    s->n_slots = o->parallel;
    s->queue_cap = o->queue;
    s->n_ctx = quill_context_n_ctx(s->ctx);
    s->stats.slots_total = o->parallel;
    if (serve_embeddings_open(s, o->context, o->threads, err) != 0)
        return -1;
    s->engine = engine_start(s->model, s->ctx, &s->loras, o->queue, o->batch, &s->lock,
                             &s->stats, err);
    return s->engine ? 0 : -1;
}

static void server_close(Server *s)
{
    if (s->engine)
        engine_stop(s->engine);
    engine_free(s->engine);
    quill_context_free(s->ctx);
    quill_context_free(s->embed_ctx);
    adapter_list_free(&s->loras);
    quill_model_free(s->model);
}

/* Stops the engine (every choice still running or waiting ends as "cancelled", which its
 * stream says in its last chunk) and waits for the streams to write their last events. */
static void server_drain(Server *s)
{
    pthread_mutex_lock(&s->lock);
    s->stopping = 1;
    pthread_mutex_unlock(&s->lock);
    engine_stop(s->engine);
    pthread_mutex_lock(&s->lock);
    while (s->n_streams > 0)
        pthread_cond_wait(&s->changed, &s->lock);
    pthread_mutex_unlock(&s->lock);
}

static struct MHD_Daemon *daemon_start(ServeDaemon *d, const ServeOptions *o, Error *err)
{
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)o->port)};
    if (inet_pton(AF_INET, o->host, &addr.sin_addr) != 1) {
        error_set(err, "--host '%s' is not an IPv4 address such as 127.0.0.1", o->host);
        return NULL;
    }
    struct MHD_Daemon *daemon = MHD_start_daemon(
        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG,
        (uint16_t)o->port, NULL, NULL, on_request, d, MHD_OPTION_SOCK_ADDR, &addr,
        MHD_OPTION_NOTIFY_COMPLETED, on_request_done, d, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)o->timeout, MHD_OPTION_END);
    if (!daemon)
        error_set(err, "cannot listen on %s:%d: %s", o->host, o->port, strerror(errno));
    return daemon;
}

/* The port the daemon listens on (the one the system chose for --port 0). */
static int daemon_port(struct MHD_Daemon *daemon)
{
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(daemon, MHD_DAEMON_INFO_BIND_PORT);
    return info ? info->port : -1;
}

/* SIGINT and SIGTERM are blocked in every thread (the daemon's inherit the mask) and taken
 * by sigwait in the main one, so that a signal never lands in the middle of a request. */
static void signals_block(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, set, NULL);
    signal(SIGPIPE, SIG_IGN); /* a client gone mid-stream is a failed write, not a death */
}

int cmd_serve(int argc, char **argv, Error *err)
{
    ServeOptions o = {.host = "127.0.0.1", .port = 8080, .parallel = 1, .max_body = 1 << 20,
                      .timeout = 60, .queue = 64, .batch = 512};
    const Flag flags[] = {
        {"host", FLAG_STRING, &o.host, 0, 0, "IPv4 address to listen on"},
        {"port", FLAG_INT, &o.port, 0, 65535, "port to listen on (0: any free one)"},
        {"parallel", FLAG_INT, &o.parallel, 1, 64,
         "sequences that decode together, one forward pass per step (slots)"},
        {"queue", FLAG_INT, &o.queue, 1, 1 << 16,
         "choices that may wait for a slot; beyond them a request is answered 503"},
        {"cache-type", FLAG_CHOICE, &o.cache_type, 0, 0,
         "the KV cache's type (default: as quill generate, f16 or f32 for quill's own F32 "
         "models)", KV_CACHE_TYPE_NAMES},
        {"batch", FLAG_INT, &o.batch, 1, 1 << 16,
         "rows one step takes at most: the decoding sequences, then prompt chunks"},
        {"context", FLAG_INT, &o.context, 0, 1 << 24,
         "positions each slot holds (0: the model's context length)"},
        {"api-key", FLAG_STRING, &o.api_key, 0, 0,
         "require Authorization: Bearer KEY on every endpoint but /health"},
        {"threads", FLAG_INT, &o.threads, 0, 1024, "compute threads (0: every core)"},
        {"max-body", FLAG_INT, &o.max_body, 1, 1 << 30, "largest request body in bytes"},
        {"cors", FLAG_STRING, &o.cors, 0, 0,
         "the origin whose pages may call the server from a browser (off by default)"},
        {"timeout", FLAG_INT, &o.timeout, 1, 86400,
         "seconds a connection may stay silent (slow headers) before it is closed"},
        {"lora", FLAG_LIST, &o.lora, 0, 0, LORA_FLAG_HELP},
        {"lora-scale", FLAG_LIST, &o.lora_scale, 0, 0, LORA_SCALE_FLAG_HELP},
    };
    const CommandSpec spec = {
        .usage = "usage: quill serve MODEL [options]\n\n"
                 "Serves MODEL (a .gguf file or a quill train directory) over HTTP until\n"
                 "SIGINT or SIGTERM: /v1/completions, /v1/chat/completions, /v1/embeddings,\n"
                 "/v1/models, /health, /tokenize, /detokenize and /metrics, with OpenAI's,\n"
                 "llama-server's and Prometheus' shapes, and the playground page at /.\n"
                 "With --lora, every endpoint answers as the model with the adapters,\n"
                 "which /lora-adapters lists and rescales, as llama-server's does.\n",
        .flags = flags,
        .n_flags = sizeof flags / sizeof *flags,
        .min_positional = 1,
        .max_positional = 1,
    };
    const char *positional[1];
    int n_positional;
    int parsed = cli_parse_command(&spec, argc, argv, positional, &n_positional, stdout, err);
    if (parsed != 0) {
        string_list_clear(&o.lora);
        string_list_clear(&o.lora_scale);
        return parsed < 0 ? -1 : 0;
    }
    sigset_t set;
    signals_block(&set);
    ServeDaemon d = {.api_key = o.api_key, .max_body = (size_t)o.max_body, .cors = o.cors};
    int status = server_open(&d.server, positional[0], &o, err);
    struct MHD_Daemon *daemon = status == 0 ? daemon_start(&d, &o, err) : NULL;
    if (daemon) {
        printf("quill serve: %s on http://%s:%d (%d slot%s of %d positions)\n",
               d.server.model_id, o.host, daemon_port(daemon), o.parallel,
               plural_s(o.parallel), d.server.n_ctx);
        fflush(stdout);
        int sig;
        sigwait(&set, &sig);
        fprintf(stderr, "quill serve: %s: stopping\n", strsignal(sig));
        server_drain(&d.server);
        MHD_stop_daemon(daemon);
    }
    server_close(&d.server);
    string_list_clear(&o.lora);
    string_list_clear(&o.lora_scale);
    return daemon ? 0 : -1;
}

/* quill serve's /v1/completions and /v1/chat/completions: a request (serve_request.c)
 * becomes one job per choice (prompts x n) for the engine (serve_engine.c), or a beam
 * search (serve_beam.c), or guided choices (serve_guided.c), and the events of its feed
 * become the answer: one JSON body, or Server-Sent Events written as the tokens come.
 *
 * A streamed choice is a series of chunks, each the text one token decided (whole UTF-8
 * characters, with what might start a stop string held back), then one with its finish
 * reason; after the last choice, `data: [DONE]`. With "quill_trace": K each token's chunk
 * also carries what every stage of the sampler chain left (the K most likely survivors)
 * and the token drawn: the playground's view of sampling. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "buffer.h"
#include "serve.h"
#include "serve_beam.h"
#include "serve_engine.h"
#include "serve_fields.h"
#include "serve_guided.h"
#include "serve_request.h"

/* ---- jobs --------------------------------------------------------------------------- */

/* The request field a sampler that quill_sampler_new refuses comes from: its ranges are
 * checked as it is read, so what is left is a grammar that does not parse or a chain. */
static const char *sampler_field(const CompletionRequest *c)
{
    return c->sampler.grammar       ? "grammar"
           : c->sampler.json_schema ? c->json_field
           : c->sampler.chain       ? "samplers"
                                    : NULL;
}

/* Choice i's job: prompt i / n, with the seed moved by i % n so that the n choices of one
 * prompt differ and a request's choices are the same whatever runs beside them. */
static EngineJob *job_new(const Server *s, const CompletionRequest *c, EngineFeed *feed, int i,
                          ApiError *e)
{
    EngineJob *job = calloc(1, sizeof *job);
    int prompt = i / c->n;
    if (job)
        job->prompt = malloc((size_t)c->n_ids[prompt] * sizeof *job->prompt);
    if (!job || !job->prompt) {
        engine_job_free(job);
        serve_error(e, 500, NULL, "out of memory");
        return NULL;
    }
    memcpy(job->prompt, c->ids[prompt], (size_t)c->n_ids[prompt] * sizeof *job->prompt);
    quill_sampler_params sp = c->sampler;
    sp.seed += (uint64_t)(i % c->n);
    job->sampler = quill_sampler_new(s->model, &sp);
    if (!job->sampler) {
        serve_error(e, 400, sampler_field(c), "%s", quill_last_error());
        engine_job_free(job);
        return NULL;
    }
    if (c->trace)
        quill_sampler_trace(job->sampler, c->trace);
    *job = (EngineJob){.feed = feed, .choice = i, .prompt = job->prompt,
                       .n_prompt = c->n_ids[prompt], .sampler = job->sampler,
                       .max_tokens = c->max_tokens < 0 ? s->n_ctx : c->max_tokens,
                       .ignore_eos = c->ignore_eos, .no_cache = !c->cache_prompt,
                       .stops = (char *const *)c->stop, .n_stops = c->n_stop,
                       .top_logprobs = c->logprobs, .trace = c->trace};
    return job;
}

/* The request's choices, queued as one; a 503 (Retry-After) when the queue has no room. */
static int completion_submit(Server *s, const CompletionRequest *c, EngineFeed *feed, ApiError *e)
{
    int n = c->n_prompts * c->n;
    EngineJob *jobs[MAX_PROMPTS * MAX_CHOICES];
    int made = 0;
    while (made < n && (jobs[made] = job_new(s, c, feed, made, e)))
        made++;
    int submitted = made == n ? engine_submit(s->engine, jobs, n) : 0;
    if (made == n && submitted == 0)
        return 0;
    if (submitted == ENGINE_FULL)
        serve_error(e, 503, NULL, "the server is busy: %d choices wait for a slot already; "
                    "try again", serve_stats_read(s).queue_length);
    else if (submitted == ENGINE_STOPPING)
        serve_error(e, 503, NULL, "the server is stopping");
    else if (submitted == ENGINE_TOO_MANY)
        serve_error(e, 400, "n", "the request has %d choices (prompts x n) and the server "
                    "takes at most %d at once: its slots and its queue (--parallel, --queue)",
                    n, s->n_slots + s->queue_cap);
    for (int i = 0; i < made; i++)
        engine_job_free(jobs[i]);
    return -1;
}

/* A request that runs beside the engine (a search, guided choices) counts as the engine
 * counts those it takes. */
static void count_request(Server *s)
{
    pthread_mutex_lock(&s->lock);
    s->stats.requests++;
    pthread_mutex_unlock(&s->lock);
}

/* A beam request's search, its choices pushed into the feed (serve_beam.c). */
static int completion_beam(Server *s, const CompletionRequest *c, EngineFeed *feed, ApiError *e)
{
    BeamRequest b = {.beam_size = c->beam_size, .length_penalty = c->length_penalty, .n = c->n,
                     .max_tokens = c->max_tokens < 0 ? s->n_ctx : c->max_tokens,
                     .ignore_eos = c->ignore_eos, .stops = (char *const *)c->stop,
                     .n_stops = c->n_stop, .parse_special = c->chat, .sampler = &c->sampler,
                     .must_include = c->must_include, .n_must_include = c->n_must_include};
    count_request(s);
    Error err;
    if (serve_beam(s, &b, c->prompts, c->n_ids, c->n_prompts, feed, &err) == 0)
        return 0;
    feed->n_open = 0; /* the choices not pushed will not come */
    return serve_error(e, 500, NULL, "%s", err.msg);
}

/* A guided request's choices, run and pushed into the feed (serve_guided.c). */
static int completion_guided(Server *s, const CompletionRequest *c, EngineFeed *feed,
                             ApiError *e)
{
    GuidedRequest g = {.guide = c->guide, .negative_prompt = c->negative_prompt,
                       .scale = c->guidance_scale, .n = c->n,
                       .max_tokens = c->max_tokens < 0 ? s->n_ctx : c->max_tokens,
                       .ignore_eos = c->ignore_eos, .stops = (char *const *)c->stop,
                       .n_stops = c->n_stop, .sampler = &c->sampler};
    count_request(s);
    Error err;
    if (serve_guided(s, &g, c->prompts, c->n_prompts, feed, &err) == 0)
        return 0;
    feed->n_open = 0; /* the choices not ended will not come */
    return serve_error(e, 500, NULL, "%s", err.msg);
}

/* The request's choices on their way: queued for the engine, or a beam search or guided
 * choices run. */
static int completion_start(Server *s, const CompletionRequest *c, EngineFeed *feed, ApiError *e)
{
    if (c->beam_size > 1)
        return completion_beam(s, c, feed, e);
    return request_guided(c) ? completion_guided(s, c, feed, e)
                             : completion_submit(s, c, feed, e);
}

/* ---- answers ------------------------------------------------------------------------ */

/* OpenAI's finish reasons: the model's end and a stop string are "stop", the length and
 * a full context "length"; a cancelled generation (the server stopping) says so. */
static const char *finish_name(quill_finish_reason r)
{
    switch (r) {
    case QUILL_FINISH_EOS:
    case QUILL_FINISH_STOP:
        return "stop";
    case QUILL_FINISH_LENGTH:
    case QUILL_FINISH_CONTEXT:
        return "length";
    default:
        return "cancelled";
    }
}

/* What every answer and chunk of one request shares. */
typedef struct {
    Server *server;
    const CompletionRequest *req;
    char id[64];
    long created;
} Answer;

static void answer_init(Answer *a, Server *s, const CompletionRequest *c)
{
    static unsigned long counter;
    unsigned long k = __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED);
    a->server = s;
    a->req = c;
    a->created = (long)time(NULL);
    snprintf(a->id, sizeof a->id, "%s-%lx%lx", c->chat ? "chatcmpl" : "cmpl",
             (unsigned long)a->created, k);
}

/* The envelope every answer and chunk has: id, object, created, model, choices. */
static cJSON *envelope(const Answer *a, bool chunk, cJSON **choices)
{
    const char *object = !a->req->chat ? "text_completion"
                         : chunk       ? "chat.completion.chunk"
                                       : "chat.completion";
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "id", a->id);
    cJSON_AddStringToObject(root, "object", object);
    cJSON_AddNumberToObject(root, "created", (double)a->created);
    cJSON_AddStringToObject(root, "model", a->server->model_id);
    *choices = cJSON_AddArrayToObject(root, "choices");
    return root;
}

static cJSON *usage(int prompt_tokens, int completion_tokens)
{
    cJSON *u = cJSON_CreateObject();
    cJSON_AddNumberToObject(u, "prompt_tokens", prompt_tokens);
    cJSON_AddNumberToObject(u, "completion_tokens", completion_tokens);
    cJSON_AddNumberToObject(u, "total_tokens", prompt_tokens + completion_tokens);
    return u;
}

/* ---- log-probabilities -------------------------------------------------------------- */

/* A token's bytes as a JSON array of numbers (a chat's "bytes": a piece may be part of a
 * character, which a string cannot hold). */
static cJSON *piece_bytes(const quill_model *m, quill_token t)
{
    char piece[256];
    int n = quill_token_to_piece(m, t, piece, sizeof piece);
    cJSON *bytes = cJSON_CreateArray();
    for (int i = 0; i < n && i < (int)sizeof piece; i++)
        cJSON_AddItemToArray(bytes, cJSON_CreateNumber((unsigned char)piece[i]));
    return bytes;
}

static int piece_length(const quill_model *m, quill_token t)
{
    char piece[256];
    int n = quill_token_to_piece(m, t, piece, sizeof piece);
    return n < (int)sizeof piece ? n : (int)sizeof piece;
}

/* One token in a chat's logprobs.content: {"token", "logprob", "bytes", "top_logprobs"}. */
static cJSON *chat_logprob(const quill_model *m, quill_token t, float logprob,
                           const EngineTop *top, int n_top)
{
    cJSON *entry = cJSON_CreateObject();
    add_piece(entry, "token", m, t);
    cJSON_AddNumberToObject(entry, "logprob", logprob);
    cJSON_AddItemToObject(entry, "bytes", piece_bytes(m, t));
    if (top) {
        cJSON *alts = cJSON_AddArrayToObject(entry, "top_logprobs");
        for (int i = 0; i < n_top; i++)
            cJSON_AddItemToArray(alts, chat_logprob(m, top[i].token, top[i].logprob, NULL, 0));
    }
    return entry;
}

/* A completion's legacy logprobs object, filled token by token: {"tokens", "token_logprobs",
 * "top_logprobs" (one {piece: logprob} object per token), "text_offset"}. */
static cJSON *legacy_logprobs_new(void)
{
    cJSON *lp = cJSON_CreateObject();
    cJSON_AddArrayToObject(lp, "tokens");
    cJSON_AddArrayToObject(lp, "token_logprobs");
    cJSON_AddArrayToObject(lp, "top_logprobs");
    cJSON_AddArrayToObject(lp, "text_offset");
    return lp;
}

/* A token's piece as a JSON string (add_piece's: a part of a character becomes U+FFFD). */
static cJSON *piece_string(const quill_model *m, quill_token t)
{
    cJSON *holder = cJSON_CreateObject();
    add_piece(holder, "piece", m, t);
    cJSON *piece = cJSON_DetachItemFromObject(holder, "piece");
    cJSON_Delete(holder);
    return piece;
}

static void legacy_logprobs_add(cJSON *lp, const quill_model *m, const EngineEvent *ev,
                                long offset)
{
    cJSON_AddItemToArray(cJSON_GetObjectItem(lp, "tokens"), piece_string(m, ev->token));
    cJSON_AddItemToArray(cJSON_GetObjectItem(lp, "token_logprobs"),
                         cJSON_CreateNumber(ev->logprob));
    cJSON *top = cJSON_CreateObject();
    for (int i = 0; i < ev->n_top; i++) {
        cJSON *piece = piece_string(m, ev->top[i].token);
        const char *key = cJSON_GetStringValue(piece);
        if (key && !cJSON_GetObjectItemCaseSensitive(top, key)) /* two tokens may spell alike */
            cJSON_AddNumberToObject(top, key, ev->top[i].logprob);
        cJSON_Delete(piece);
    }
    cJSON_AddItemToArray(cJSON_GetObjectItem(lp, "top_logprobs"), top);
    cJSON_AddItemToArray(cJSON_GetObjectItem(lp, "text_offset"), cJSON_CreateNumber(offset));
}

/* The logprobs a choice carries in its current answer or chunk, NULL when not asked. */
typedef struct {
    cJSON *legacy;  /* completions */
    cJSON *content; /* chat: the array of logprobs.content */
    long offset;    /* the next token's text_offset */
} ChoiceLogprobs;

static void logprobs_add(ChoiceLogprobs *lp, const CompletionRequest *c, const quill_model *m,
                         const EngineEvent *ev)
{
    if (c->logprobs < 0 || ev->token < 0)
        return;
    if (c->chat) {
        if (!lp->content)
            lp->content = cJSON_CreateArray();
        cJSON_AddItemToArray(lp->content, chat_logprob(m, ev->token, ev->logprob, ev->top,
                                                       ev->n_top));
    } else {
        if (!lp->legacy)
            lp->legacy = legacy_logprobs_new();
        legacy_logprobs_add(lp->legacy, m, ev, lp->offset);
    }
    lp->offset += piece_length(m, ev->token);
}

/* Moves the gathered logprobs into the choice as "logprobs" (null when none). */
static void logprobs_attach(cJSON *choice, ChoiceLogprobs *lp, const CompletionRequest *c)
{
    if (c->chat && lp->content) {
        cJSON *obj = cJSON_AddObjectToObject(choice, "logprobs");
        cJSON_AddItemToObject(obj, "content", lp->content);
    } else if (!c->chat && lp->legacy) {
        cJSON_AddItemToObject(choice, "logprobs", lp->legacy);
    } else {
        cJSON_AddNullToObject(choice, "logprobs");
    }
    lp->content = NULL;
    lp->legacy = NULL;
}

/* ---- whole answers ------------------------------------------------------------------ */

/* One choice of a whole answer, gathered from its events. */
typedef struct {
    char *text;
    size_t len, cap;
    ChoiceLogprobs logprobs;
    const char *finish;
    uint64_t missed;
} WholeChoice;

static int whole_append(WholeChoice *w, const char *text, size_t n)
{
    Error err;
    if (n == 0)
        return 0;
    if (buffer_reserve(&w->text, &w->cap, w->len + n + 1, 256, "text", &err) != 0)
        return -1;
    memcpy(w->text + w->len, text, n);
    w->len += n;
    return 0;
}

/* A request with must_include: the choice's "missed_words", those its text lacks (an empty
 * array when it holds them all). */
static void add_missed_words(cJSON *choice, const CompletionRequest *c, uint64_t missed)
{
    if (c->n_must_include == 0)
        return;
    cJSON *words = cJSON_AddArrayToObject(choice, "missed_words");
    for (int i = 0; i < c->n_must_include; i++)
        if (missed & UINT64_C(1) << i)
            cJSON_AddItemToArray(words, cJSON_CreateString(c->must_include[i]));
}

/* {"index", "text", "logprobs", "finish_reason"}, or a chat's {"index", "message": {"role",
 * "content"}, "logprobs", "finish_reason"}; "missed_words" with must_include. */
static cJSON *whole_choice(const CompletionRequest *c, int index, WholeChoice *w)
{
    cJSON *choice = cJSON_CreateObject();
    cJSON_AddNumberToObject(choice, "index", index);
    const char *text = w->text ? w->text : "";
    if (c->chat) {
        cJSON *message = cJSON_AddObjectToObject(choice, "message");
        cJSON_AddStringToObject(message, "role", "assistant");
        add_text(message, "content", text, w->len);
    } else {
        add_text(choice, "text", text, w->len);
    }
    logprobs_attach(choice, &w->logprobs, c);
    cJSON_AddStringToObject(choice, "finish_reason", w->finish ? w->finish : "cancelled");
    add_missed_words(choice, c, w->missed);
    return choice;
}

/* Reads the feed to its end into each choice; -1 when memory ran out. */
static int whole_gather(Answer *a, EngineFeed *feed, WholeChoice *w, int *n_generated)
{
    const CompletionRequest *c = a->req;
    int status = 0;
    for (int i = 0; c->echo && i < c->n_prompts * c->n; i++)
        status |= whole_append(&w[i], c->prompts[i / c->n], strlen(c->prompts[i / c->n]));
    for (int i = 0; c->echo && i < c->n_prompts * c->n; i++)
        w[i].logprobs.offset = (long)strlen(c->prompts[i / c->n]);
    EngineEvent ev;
    while (feed_next(feed, &ev)) {
        WholeChoice *ch = &w[ev.choice];
        status |= whole_append(ch, ev.text, ev.n_text);
        logprobs_add(&ch->logprobs, c, a->server->model, &ev);
        if (ev.end) {
            ch->finish = finish_name(ev.finish);
            ch->missed = ev.missed;
            *n_generated += ev.n_generated;
        }
        engine_event_free(&ev);
    }
    return status != 0 || feed->out_of_memory ? -1 : 0;
}

static int answer_whole(Server *s, const CompletionRequest *c, EngineFeed *feed, ServeReply *r,
                        ApiError *e)
{
    Answer a;
    answer_init(&a, s, c);
    int n = c->n_prompts * c->n, n_generated = 0;
    WholeChoice *w = calloc((size_t)n, sizeof *w);
    int status = w ? whole_gather(&a, feed, w, &n_generated) : -1;
    cJSON *choices;
    cJSON *root = status == 0 ? envelope(&a, false, &choices) : NULL;
    for (int i = 0; i < n && root; i++)
        cJSON_AddItemToArray(choices, whole_choice(c, i, &w[i]));
    for (int i = 0; w && i < n; i++) {
        free(w[i].text);
        cJSON_Delete(w[i].logprobs.legacy);
        cJSON_Delete(w[i].logprobs.content);
    }
    free(w);
    if (!root)
        return serve_error(e, 500, NULL, "out of memory");
    cJSON_AddItemToObject(root, "usage", usage(c->n_prompt_tokens, n_generated));
    r->body = root;
    return 0;
}

/* ---- streams ------------------------------------------------------------------------ */

/* "quill_stages": what each stage of the chain left, and "quill_token": the token drawn
 * with its probability in the final list (null when it is not among the K shown). */
static void add_trace(cJSON *choice, const quill_model *m, const EngineEvent *ev)
{
    cJSON *out = cJSON_AddArrayToObject(choice, "quill_stages");
    cJSON *chosen = cJSON_AddObjectToObject(choice, "quill_token");
    cJSON_AddNumberToObject(chosen, "id", ev->token);
    double p_chosen = NAN;
    for (int i = 0; i < ev->n_stages; i++) {
        const EngineStage *st = &ev->stages[i];
        cJSON *stage = cJSON_CreateObject();
        cJSON_AddStringToObject(stage, "stage", st->name);
        cJSON_AddNumberToObject(stage, "n_survivors", st->n_survivors);
        cJSON *top = cJSON_AddArrayToObject(stage, "top");
        for (int j = 0; j < st->n_top; j++) {
            const quill_candidate *cand = &st->top[j];
            cJSON *entry = cJSON_CreateObject();
            cJSON_AddNumberToObject(entry, "token", cand->token);
            add_piece(entry, "text", m, cand->token);
            cJSON_AddNumberToObject(entry, "logit", cand->logit);
            cJSON_AddNumberToObject(entry, "p", cand->p);
            cJSON_AddItemToArray(top, entry);
            if (i == ev->n_stages - 1 && cand->token == ev->token)
                p_chosen = cand->p;
        }
        cJSON_AddItemToArray(out, stage);
    }
    if (isnan(p_chosen))
        cJSON_AddNullToObject(chosen, "p");
    else
        cJSON_AddNumberToObject(chosen, "p", p_chosen);
}

typedef struct {
    Answer answer;
    CompletionRequest *req;
    EngineFeed feed;
    int fd;
    bool client_gone;
    ChoiceLogprobs *logprobs; /* per choice: the offsets of its text */
} Stream;

static bool write_all(int fd, const char *data, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, data, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        data += w;
        n -= (size_t)w;
    }
    return true;
}

/* Sends `data: {json}` and a blank line; a failed write means the client is gone: its
 * choices are cancelled and nothing more is written. */
static void send_event(Stream *st, cJSON *json)
{
    char *text = st->client_gone ? NULL : cJSON_PrintUnformatted(json);
    cJSON_Delete(json);
    bool ok = text && write_all(st->fd, "data: ", 6) && write_all(st->fd, text, strlen(text)) &&
              write_all(st->fd, "\n\n", 2);
    free(text);
    if (!ok && !st->client_gone) {
        st->client_gone = true;
        feed_cancel(&st->feed);
    }
}

/* A chunk's choice: {"index", "text", "logprobs"} for a completion, {"index", "delta"} for
 * a chat (the first chunk's delta is the role, the last one's empty), with finish_reason
 * null until the last. */
static cJSON *chunk_choice(const Stream *st, int index, const char *text, size_t n,
                           const char *finish)
{
    cJSON *choice = cJSON_CreateObject();
    cJSON_AddNumberToObject(choice, "index", index);
    if (st->req->chat) {
        cJSON *delta = cJSON_AddObjectToObject(choice, "delta");
        if (text)
            add_text(delta, "content", text, n);
        else if (!finish)
            cJSON_AddStringToObject(delta, "role", "assistant");
    } else {
        add_text(choice, "text", text ? text : "", text ? n : 0);
    }
    if (finish)
        cJSON_AddStringToObject(choice, "finish_reason", finish);
    else
        cJSON_AddNullToObject(choice, "finish_reason");
    return choice;
}

static void send_chunk(Stream *st, cJSON *choice)
{
    cJSON *choices;
    cJSON *root = envelope(&st->answer, true, &choices);
    cJSON_AddItemToArray(choices, choice);
    send_event(st, root);
}

/* The chunks one event makes: the token's text (with its logprobs and trace), then, at the
 * end of its choice, the finish reason. A token whose text is held back still makes a
 * chunk when it carries a trace or logprobs, so that every token can be shown. */
static void stream_event(Stream *st, const EngineEvent *ev)
{
    const CompletionRequest *c = st->req;
    const quill_model *m = st->answer.server->model;
    bool traced = c->trace && ev->token >= 0;
    bool scored = c->logprobs >= 0 && ev->token >= 0;
    if (ev->n_text > 0 || traced || scored) {
        cJSON *choice = chunk_choice(st, ev->choice, ev->text ? ev->text : "", ev->n_text, NULL);
        ChoiceLogprobs *lp = &st->logprobs[ev->choice];
        logprobs_add(lp, c, m, ev);
        logprobs_attach(choice, lp, c);
        if (traced)
            add_trace(choice, m, ev);
        send_chunk(st, choice);
    }
    if (ev->end) {
        cJSON *last = chunk_choice(st, ev->choice, NULL, 0, finish_name(ev->finish));
        add_missed_words(last, c, ev->missed);
        send_chunk(st, last);
    }
}

/* The start of each choice: a chat's role chunk, a completion's echoed prompt. */
static void stream_open_choices(Stream *st)
{
    const CompletionRequest *c = st->req;
    for (int i = 0; i < c->n_prompts * c->n; i++) {
        const char *prompt = c->prompts[i / c->n];
        if (c->chat)
            send_chunk(st, chunk_choice(st, i, NULL, 0, NULL));
        else if (c->echo)
            send_chunk(st, chunk_choice(st, i, prompt, strlen(prompt), NULL));
        if (c->echo)
            st->logprobs[i].offset = (long)strlen(prompt);
    }
}

static void stream_free(Stream *st)
{
    feed_close(&st->feed);
    request_free(st->req);
    free(st->logprobs);
    free(st);
}

/* The streaming thread: every event's chunks as the engine makes them, the usage chunk when
 * asked, [DONE]; then the pipe is closed (the HTTP side ends the response). */
static void *stream_run(void *arg)
{
    Stream *st = arg;
    Server *s = st->answer.server;
    stream_open_choices(st);
    int n_generated = 0;
    EngineEvent ev;
    while (feed_next(&st->feed, &ev)) {
        stream_event(st, &ev);
        n_generated += ev.end ? ev.n_generated : 0;
        engine_event_free(&ev);
    }
    if (st->feed.out_of_memory) {
        ApiError e = {0};
        serve_error(&e, 500, NULL, "out of memory");
        send_event(st, serve_error_body(&e));
    }
    if (st->req->include_usage) { /* OpenAI's usage chunk: no choices */
        cJSON *choices;
        cJSON *root = envelope(&st->answer, true, &choices);
        cJSON_AddItemToObject(root, "usage", usage(st->req->n_prompt_tokens, n_generated));
        send_event(st, root);
    }
    if (!st->client_gone)
        write_all(st->fd, "data: [DONE]\n\n", 14);
    close(st->fd);
    stream_free(st);
    pthread_mutex_lock(&s->lock);
    s->n_streams--;
    pthread_cond_broadcast(&s->changed);
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

static Stream *stream_new(Server *s, CompletionRequest *c)
{
    Stream *st = calloc(1, sizeof *st);
    if (!st)
        return NULL;
    st->logprobs = calloc((size_t)(c->n_prompts * c->n), sizeof *st->logprobs);
    if (!st->logprobs) {
        free(st);
        return NULL;
    }
    answer_init(&st->answer, s, c);
    st->req = c;
    st->fd = -1;
    feed_init(&st->feed, c->n_prompts * c->n);
    return st;
}

/* Queues the request and starts its stream's thread; the pipe's read end is the reply. */
static int stream_start(Server *s, CompletionRequest *c, ServeReply *r, ApiError *e)
{
    int fds[2];
    Stream *st = stream_new(s, c);
    if (!st || pipe(fds) != 0) {
        free(st ? st->logprobs : NULL);
        free(st);
        request_free(c);
        return serve_error(e, 500, NULL, "cannot start a stream: %s", strerror(errno));
    }
    st->fd = fds[1];
    if (completion_start(s, c, &st->feed, e) != 0) {
        close(fds[0]);
        close(fds[1]);
        st->feed.n_open = 0; /* nothing was queued: nothing to wait for */
        stream_free(st);
        return -1;
    }
    pthread_mutex_lock(&s->lock);
    s->n_streams++;
    pthread_mutex_unlock(&s->lock);
    pthread_t thread;
    if (pthread_create(&thread, NULL, stream_run, st) != 0) {
        close(fds[0]);
        stream_run(st); /* the choices are cancelled (the pipe is closed) and waited for */
        return serve_error(e, 500, NULL, "cannot start a stream thread");
    }
    pthread_detach(thread);
    r->stream_fd = fds[0];
    return 0;
}

static int serve_completion(Server *s, const char *body, size_t len, bool chat,
                            ServeReply *r, ApiError *e)
{
    CompletionRequest *c = request_read(body, len, chat, s, e);
    if (!c)
        return -1;
    if (request_tokenize(c, s, e) != 0) {
        request_free(c);
        return -1;
    }
    if (c->stream)
        return stream_start(s, c, r, e); /* the stream owns c from here */
    EngineFeed feed;
    feed_init(&feed, c->n_prompts * c->n);
    int status = completion_start(s, c, &feed, e);
    if (status == 0)
        status = answer_whole(s, c, &feed, r, e);
    else
        feed.n_open = 0; /* nothing was queued */
    feed_close(&feed);
    request_free(c);
    return status;
}

int serve_completions(Server *s, const char *body, size_t len, ServeReply *r, ApiError *e)
{
    return serve_completion(s, body, len, false, r, e);
}

int serve_chat_completions(Server *s, const char *body, size_t len, ServeReply *r, ApiError *e)
{
    return serve_completion(s, body, len, true, r, e);
}

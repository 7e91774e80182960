/* libquill: the generation helper. It is the CLI's loop: a Session (session.h) that borrows
 * the context's sequence and the sampler, so stop strings, whole UTF-8 characters, the
 * context shift and the finish reasons are session_continue's, here as in `quill generate`. */
#include <limits.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "quill_internal.h"
#include "session.h"

_Static_assert((int)QUILL_FINISH_LENGTH == (int)FINISH_LENGTH &&
                   (int)QUILL_FINISH_EOS == (int)FINISH_EOS &&
                   (int)QUILL_FINISH_STOP == (int)FINISH_STOP &&
                   (int)QUILL_FINISH_CONTEXT == (int)FINISH_CONTEXT &&
                   (int)QUILL_FINISH_CANCELLED == (int)FINISH_CANCELLED,
               "the public finish reasons are the session's");

const char *quill_finish_reason_name(quill_finish_reason r)
{
    if (r < QUILL_FINISH_LENGTH || r > QUILL_FINISH_CANCELLED)
        return "unknown";
    return finish_reason_name((FinishReason)r);
}

quill_generate_params quill_generate_params_default(void)
{
    return (quill_generate_params){.max_tokens = -1, .add_special = true, .n_keep = 0,
                                   .guidance_scale = 1.5f, .guidance_seq = 1};
}

/* What the session's callback needs to reach the caller's. */
typedef struct {
    const quill_generate_params *p;
    quill_sampler *sampler; /* its trace follows the session's, when tracing */
    atomic_bool cancel;  /* the session's flag */
    bool refused;        /* the caller's callback returned false */
} Listener;

/* The caller's cancel flag, read once per token (the session checks its own before each). */
static void poll_cancel(Listener *l)
{
    if (l->p->cancel && *l->p->cancel)
        atomic_store(&l->cancel, true);
}

/* Each token the session chooses, as the caller's event. The end-of-text token is not
 * shown (it has no text); the session's last call (token -1) is, when it carries text held
 * back until the end. */
static void on_session_token(void *ctx, const SessionToken *t)
{
    Listener *l = ctx;
    poll_cancel(l);
    if (t->trace)
        api_sampler_traced(l->sampler, t->trace);
    bool text_only = t->token < 0;
    bool end_token = !text_only && !t->piece; /* the session gives it no bytes */
    if (!l->p->on_token || l->refused || end_token || (text_only && t->n_text == 0))
        return;
    quill_token_event ev = {.token = t->token, .piece = t->piece ? t->piece : "",
                            .n_piece = t->n_piece, .text = t->text ? t->text : "",
                            .n_text = t->n_text, .logprob = t->logprob};
    if (!l->p->on_token(&ev, l->p->user)) {
        l->refused = true;
        atomic_store(&l->cancel, true);
    }
    poll_cancel(l); /* the callback may have set it */
}

/* Whether p asks for classifier-free guidance: a text on either side. */
static bool guided(const quill_generate_params *p)
{
    return p->guide || p->negative_prompt;
}

static int check_guidance(const quill_context *c, const quill_generate_params *p)
{
    const char *fn = "quill_generate";
    if (!guided(p))
        return QUILL_OK;
    if (p->guidance_seq == p->seq || !isfinite(p->guidance_scale))
        return api_fail("%s: guidance needs guidance_seq (%d) other than seq (%d), and a "
                        "finite guidance_scale (%g)", fn, p->guidance_seq, p->seq,
                        (double)p->guidance_scale);
    if (p->guidance_seq < 0 || p->guidance_seq >= quill_context_n_seq(c))
        return api_fail("%s: guidance decodes a second sequence, guidance_seq %d, and the "
                        "context has %d (give it n_seq >= %d)", fn, p->guidance_seq,
                        quill_context_n_seq(c), p->guidance_seq + 1);
    if (p->context_shift)
        return api_fail("%s: guidance does not shift the context (context_shift is on)", fn);
    int cond = infer_seq_length(&c->infer, p->seq);
    if (cond > 0 && infer_seq_length(&c->infer, p->guidance_seq) == 0)
        return api_fail_as(QUILL_ERROR_CONTEXT, "%s: sequence %d holds %d tokens and the "
                           "unconditional sequence %d none: guidance starts on an empty "
                           "sequence and continues both", fn, p->seq, cond, p->guidance_seq);
    return QUILL_OK;
}

static int check_generate(const quill_context *c, const quill_sampler *s, const char *prompt,
                          const quill_generate_params *p)
{
    const char *fn = "quill_generate";
    if (api_check_handle(c, fn, "context") != QUILL_OK ||
        api_check_handle(s, fn, "sampler") != QUILL_OK ||
        api_check_handle(prompt, fn, "prompt") != QUILL_OK ||
        api_check_seq(c, p->seq, fn) != QUILL_OK)
        return QUILL_ERROR;
    if (s->model->tok.n_vocab != c->model->tok.n_vocab)
        return api_fail("%s: the sampler was made for a vocabulary of %d, the context's model "
                        "has %d", fn, s->model->tok.n_vocab, c->model->tok.n_vocab);
    if (p->max_tokens < -1 || p->n_stop < 0 || (p->n_stop > 0 && !p->stop) || p->n_keep < -1)
        return api_fail("%s: max_tokens %d (-1: no limit), %d stop strings at %p, n_keep %d",
                        fn, p->max_tokens, p->n_stop, (const void *)p->stop, p->n_keep);
    for (int i = 0; i < p->n_stop; i++)
        if (!p->stop[i] || !*p->stop[i])
            return api_fail("%s: stop string %d is empty", fn, i);
    return check_guidance(c, p);
}

/* The tokens sequence seq gets: prefix (when not NULL and the sequence is empty) then the
 * prompt, joined as written; a bos first only when the sequence is empty, and no
 * SentencePiece space prefix when it continues a text. */
static int prompt_tokens(const quill_context *c, int seq, const char *prefix,
                         const char *prompt, const quill_generate_params *p, int **ids, int *n)
{
    const Tokenizer *tok = &c->model->tok;
    bool empty = infer_seq_length(&c->infer, seq) == 0;
    const char *before = empty && prefix ? prefix : "";
    size_t n_before = strlen(before), n_prompt = strlen(prompt);
    char *text = malloc(n_before + n_prompt + 1);
    if (!text)
        return api_fail_as(QUILL_ERROR_MEMORY, "quill_generate: out of memory");
    memcpy(text, before, n_before);
    memcpy(text + n_before, prompt, n_prompt + 1);
    EncodeOptions opt = {.add_bos = empty && p->add_special && tok->add_bos,
                         .parse_special = p->parse_special, .mid_text = !empty};
    size_t count;
    Error err;
    int status = tokenizer_encode_with(tok, text, n_before + n_prompt, opt, ids, &count, &err);
    free(text);
    if (status != 0)
        return api_error(&err);
    *n = (int)count;
    return QUILL_OK;
}

/* With no new prompt each sequence's last token runs again (forgotten, then decoded at its
 * own position), so that its logits are the last decode's: the context may have decoded
 * other sequences since, or been loaded from a file. */
static int rerun_last_tokens(InferContext *c, const int *seqs, int n, Error *err)
{
    int last[2];
    for (int i = 0; i < n; i++) {
        int len = infer_seq_length(c, seqs[i]);
        if (len == 0)
            return error_set(err, "the prompt is empty and sequence %d holds nothing to "
                                  "continue", seqs[i]);
        last[i] = infer_seq_tokens(c, seqs[i])[len - 1];
        if (infer_seq_truncate(c, seqs[i], len - 1, len, err) != 0)
            return -1;
    }
    return infer_decode_step(c, seqs, last, n, err);
}

static void session_params_from(const quill_generate_params *p, int n_prompt_end, bool trace,
                                 SessionParams *out)
{
    session_params_default(out);
    out->max_tokens = p->max_tokens < 0 ? INT_MAX : p->max_tokens;
    out->stops = (char *const *)p->stop; /* the stream only reads them */
    out->n_stops = p->n_stop;
    out->ignore_eos = p->ignore_eos;
    out->context_shift = p->context_shift;
    out->n_keep = p->n_keep < 0 ? n_prompt_end : p->n_keep;
    out->logprobs = true;
    out->trace = trace;
}

/* A call's times into the context's totals. */
static void perf_add(quill_perf *perf, const SessionStats *t)
{
    perf->n_prompt_tokens += t->prompt_tokens;
    perf->prompt_seconds += t->prompt_seconds;
    perf->n_generated += t->generated_tokens;
    perf->generate_seconds += t->generate_seconds;
    if (t->first_token_seconds > 0) /* a token was chosen */
        perf->first_token_seconds = t->first_token_seconds;
}

/* The prompt's tokens for each side: ids[0] the sequence seq's, and with guidance ids[1]
 * the unconditional side's (its sequence cleared first when seq starts empty). */
static int sides_tokens(quill_context *c, const char *prompt, const quill_generate_params *p,
                        int *ids[2], int n[2])
{
    if (prompt_tokens(c, p->seq, p->guide, prompt, p, &ids[0], &n[0]) != QUILL_OK)
        return QUILL_ERROR;
    if (!guided(p))
        return QUILL_OK;
    if (infer_seq_length(&c->infer, p->seq) == 0)
        infer_seq_clear(&c->infer, p->guidance_seq);
    return prompt_tokens(c, p->guidance_seq, p->negative_prompt, prompt, p, &ids[1], &n[1]);
}

/* The new tokens through the model: both sides' in one batch with guidance, or, with no new
 * prompt, the last token of each side again. */
static int feed(Session *session, const quill_generate_params *p, int *ids[2], int n[2],
                Error *err)
{
    bool guide = guided(p);
    int seqs[2] = {p->seq, p->guidance_seq};
    if (guide && session_guide(session, p->guidance_seq, p->guidance_scale, err) != 0)
        return -1;
    if (n[0] == 0 && n[1] == 0)
        return rerun_last_tokens(session->ctx, seqs, guide ? 2 : 1, err);
    return guide ? session_feed_guided(session, ids[0], n[0], ids[1], n[1], err)
                 : session_feed(session, ids[0], n[0], err);
}

/* Feeds the prompt (or runs the last tokens again) and continues. */
static int generate(quill_context *c, quill_sampler *s, const char *prompt,
                    const quill_generate_params *p, Listener *l, FinishReason *finish)
{
    int *ids[2] = {NULL, NULL}, n[2] = {0, 0};
    if (sides_tokens(c, prompt, p, ids, n) != QUILL_OK) {
        free(ids[0]);
        free(ids[1]);
        return QUILL_ERROR;
    }
    SessionParams params;
    session_params_from(p, infer_seq_length(&c->infer, p->seq) + n[0], s->trace_top > 0,
                        &params);
    Session session;
    Error err;
    int status = session_borrow(&session, &c->model->model, &c->model->tok, &c->infer, p->seq,
                                &s->sampler, &params, &err);
    session.cancel = &l->cancel;
    if (status == 0)
        status = feed(&session, p, ids, n, &err);
    free(ids[0]);
    free(ids[1]);
    Completion out = {0};
    if (status == 0)
        status = session_continue(&session, on_session_token, l, &out, &err);
    *finish = l->refused ? FINISH_CANCELLED : out.finish;
    perf_add(&c->perf, &session.stats);
    completion_free(&out);
    session_free(&session);
    return status == 0 ? QUILL_OK : api_error_as(QUILL_ERROR_CONTEXT, &err);
}

int quill_generate(quill_context *c, quill_sampler *s, const char *prompt,
                   const quill_generate_params *p, quill_finish_reason *finish)
{
    quill_generate_params params = p ? *p : quill_generate_params_default();
    if (check_generate(c, s, prompt, &params) != QUILL_OK)
        return QUILL_ERROR;
    Listener l = {.p = &params, .sampler = s};
    atomic_init(&l.cancel, false);
    poll_cancel(&l);
    api_context_use_threads(c);
    FinishReason reason = FINISH_CANCELLED;
    int status = atomic_load(&l.cancel) ? QUILL_OK : generate(c, s, prompt, &params, &l, &reason);
    if (finish)
        *finish = (quill_finish_reason)reason;
    return status;
}

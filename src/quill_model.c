/* libquill: the library's version and errors, models, tokens and text, the chat format. */
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu.h"
#include "hash.h"
#include "loader.h"
#include "matmul.h"
#include "quill_internal.h"

_Static_assert(sizeof(quill_token) == sizeof(int), "quill_token arrays are passed as int arrays");

/* ---- the library ---------------------------------------------------------------------- */

static _Thread_local char last_error[sizeof(Error)];
static _Thread_local quill_error_kind last_error_kind;

static int fail_with(quill_error_kind kind, const char *fmt, va_list ap)
{
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    last_error_kind = kind;
    return QUILL_ERROR;
}

int api_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fail_with(QUILL_ERROR_PARAMETER, fmt, ap);
    va_end(ap);
    return QUILL_ERROR;
}

int api_fail_as(quill_error_kind kind, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fail_with(kind, fmt, ap);
    va_end(ap);
    return QUILL_ERROR;
}

int api_error(const Error *err)
{
    return api_fail("%s", err->msg);
}

int api_error_as(quill_error_kind kind, const Error *err)
{
    return api_fail_as(kind, "%s", err->msg);
}

int api_check_handle(const void *handle, const char *function, const char *name)
{
    return handle ? QUILL_OK : api_fail("%s: %s is NULL", function, name);
}

int api_check_seq(const quill_context *c, int seq, const char *function)
{
    int n_seq = c->infer.params.n_seq;
    if (seq < 0 || seq >= n_seq)
        return api_fail_as(QUILL_ERROR_CONTEXT, "%s: no sequence %d (the context has %d: 0 to %d)",
                           function, seq, n_seq, n_seq - 1);
    return QUILL_OK;
}

int api_copy_out(const char *bytes, size_t n, char *buf, size_t cap)
{
    if (cap > 0) {
        size_t k = n < cap - 1 ? n : cap - 1;
        memcpy(buf, bytes, k);
        buf[k] = '\0';
    }
    return n > INT_MAX ? INT_MAX : (int)n;
}

/* The header's version macros as one string literal, "0.1.0" (two steps, so that the
 * macros are expanded before they are quoted). */
#define STRINGIFY_(x) #x
#define STRINGIFY(x) STRINGIFY_(x)

const char *quill_version(void)
{
    return STRINGIFY(QUILL_VERSION_MAJOR) "." STRINGIFY(QUILL_VERSION_MINOR) "." STRINGIFY(
        QUILL_VERSION_PATCH);
}

const char *quill_cpu_features(void)
{
    return cpu_features();
}

const char *quill_last_error(void)
{
    return last_error;
}

quill_error_kind quill_last_error_kind(void)
{
    return last_error_kind;
}

/* ---- models ----------------------------------------------------------------------------- */

quill_model_params quill_model_params_default(void)
{
    return (quill_model_params){.n_threads = 0, .use_mmap = true};
}

/* A saved state belongs to one model: the hash of every tensor's name, type and shape (and
 * the vocabulary size), which two files of the same weights in another type do not share. */
static uint64_t model_identity(const GgufFile *f, int vocab_size)
{
    Hash64Stream *h = hash64_stream_new();
    if (!h)
        return 0;
    hash64_stream_add(h, &vocab_size, sizeof vocab_size);
    gguf_hash_tensors(f, false, h);
    uint64_t value = hash64_stream_value(h);
    hash64_stream_free(h);
    return value;
}

/* use_mmap = false: every page of the weights is read now, not when a token first needs it. */
static void touch_pages(const GgufFile *f)
{
    const volatile unsigned char *bytes = f->map;
    unsigned char sum = 0;
    for (size_t at = 0; bytes && at < f->map_size; at += 4096)
        sum ^= bytes[at];
    (void)sum;
}

/* A file of a tokenizer alone (llama.cpp's ggml-vocab-*.gguf): tokens and text work, a
 * context cannot be made. */
static int load_vocab_only(quill_model *m, const char *path, Error *err)
{
    if (gguf_open(&m->file, path, err) != 0)
        return -1;
    if (tokenizer_from_gguf(&m->tok, m->file, err) != 0)
        return error_prefix(err, "%s", path);
    m->vocab_only = true;
    return 0;
}

quill_model *quill_model_load(const char *path, const quill_model_params *p)
{
    if (api_check_handle(path, "quill_model_load", "path") != QUILL_OK)
        return NULL;
    quill_model_params params = p ? *p : quill_model_params_default();
    if (params.n_threads < 0) {
        api_fail("quill_model_load: n_threads is %d (0: every core)", params.n_threads);
        return NULL;
    }
    quill_model *m = calloc(1, sizeof *m);
    if (!m) {
        api_fail_as(QUILL_ERROR_MEMORY, "quill_model_load: out of memory");
        return NULL;
    }
    char resolved[4096];
    model_path_resolve(path, resolved, sizeof resolved);
    Error err;
    int status = params.vocab_only ? load_vocab_only(m, resolved, &err)
                                   : model_file_load(resolved, &m->model, &m->tok, &err);
    if (status != 0) {
        api_error_as(QUILL_ERROR_FILE, &err);
        quill_model_free(m);
        return NULL;
    }
    if (!m->vocab_only) {
        m->file = m->model.file;
        if (!params.use_mmap)
            touch_pages(m->file);
    }
    uint64_t bytes;
    model_file_size(m->file, &m->n_params, &bytes);
    m->identity = model_identity(m->file, m->tok.n_vocab);
    m->cache_type = kv_cache_type_default(m->file);
    m->n_threads = params.n_threads;
    return m;
}

void quill_model_free(quill_model *m)
{
    if (!m)
        return;
    if (m->vocab_only)
        gguf_close(m->file);
    model_free(&m->model);
    tokenizer_free(&m->tok);
    free(m);
}

/* A string key of the file, or fallback. */
static const char *file_str(const quill_model *m, const char *key, const char *fallback)
{
    Error unused;
    const char *value;
    return gguf_get_str(m->file, key, &value, &unused) == 0 ? value : fallback;
}

const char *quill_model_architecture(const quill_model *m)
{
    return m ? file_str(m, "general.architecture", "llama") : "";
}

const char *quill_model_name(const quill_model *m)
{
    return m ? file_str(m, "general.name", "") : "";
}

int quill_model_vocab_size(const quill_model *m)
{
    return m ? m->tok.n_vocab : 0;
}

int quill_model_context_length(const quill_model *m)
{
    return m ? m->model.config.context : 0;
}

int quill_model_embedding_size(const quill_model *m)
{
    return m ? m->model.config.dim : 0;
}

int quill_model_layers(const quill_model *m)
{
    return m ? m->model.config.n_layers : 0;
}

uint64_t quill_model_parameter_count(const quill_model *m)
{
    return m ? m->n_params : 0;
}

const char *quill_model_chat_template(const quill_model *m)
{
    return m ? file_str(m, "tokenizer.chat_template", NULL) : NULL;
}

int quill_model_describe(const quill_model *m, char *buf, size_t cap)
{
    if (api_check_handle(m, "quill_model_describe", "model") != QUILL_OK)
        return -1;
    char line[512];
    const ModelConfig *c = &m->model.config;
    const char *weights = m->vocab_only ? "none (vocabulary only)"
                                        : gguf_tensor_type_name(m->model.wt.layers[0].attn_q.type);
    int n = snprintf(line, sizeof line,
                     "%s, %.2fM parameters, %d layers of %d, weights %s, vocabulary %d (%s), "
                     "context %d",
                     quill_model_architecture(m), m->n_params / 1e6, c->n_layers, c->dim, weights,
                     m->tok.n_vocab, tokenizer_kind_name(&m->tok), c->context);
    return api_copy_out(line, (size_t)n, buf, cap);
}

/* ---- tokens and text ---------------------------------------------------------------------- */

int quill_tokenize(const quill_model *m, const char *text, size_t len, bool add_special,
                   bool parse_special, quill_token *tokens, int cap)
{
    if (api_check_handle(m, "quill_tokenize", "model") != QUILL_OK ||
        api_check_handle(text, "quill_tokenize", "text") != QUILL_OK)
        return -1;
    if (cap < 0 || (cap > 0 && !tokens))
        return api_fail("quill_tokenize: a buffer of %d tokens at %p", cap, (void *)tokens);
    EncodeOptions opt = {.add_bos = add_special && m->tok.add_bos,
                         .parse_special = parse_special};
    int *ids;
    size_t n;
    Error err;
    if (tokenizer_encode_with(&m->tok, text, len, opt, &ids, &n, &err) != 0)
        return api_error(&err);
    if (n > INT_MAX) {
        free(ids);
        return api_fail("quill_tokenize: %zu tokens, more than an int counts", n);
    }
    if (cap > 0 && n > 0)
        memcpy(tokens, ids, ((size_t)cap < n ? (size_t)cap : n) * sizeof *ids);
    free(ids);
    return (int)n;
}

static int check_token(const quill_model *m, quill_token token, const char *function)
{
    if (token < 0 || token >= m->tok.n_vocab)
        return api_fail("%s: token %d is not in the vocabulary (0 to %d)", function, token,
                        m->tok.n_vocab - 1);
    return QUILL_OK;
}

bool quill_token_is_control(const quill_model *m, quill_token token)
{
    if (!m || token < 0 || token >= m->tok.n_vocab || !m->tok.types)
        return false;
    int32_t type = m->tok.types[token];
    return type == TOKEN_TYPE_CONTROL || type == TOKEN_TYPE_UNKNOWN;
}

int quill_token_to_piece(const quill_model *m, quill_token token, char *buf, size_t cap)
{
    if (api_check_handle(m, "quill_token_to_piece", "model") != QUILL_OK ||
        check_token(m, token, "quill_token_to_piece") != QUILL_OK)
        return -1;
    const Tokenizer *t = &m->tok;
    if (quill_token_is_control(m, token))
        return api_copy_out(t->pieces[token], strlen(t->pieces[token]), buf, cap);
    /* the bytes land in buf whole or cut, and the count is the whole piece's */
    size_t n = tokenizer_token_bytes(t, token, buf, cap);
    if (cap > 0)
        buf[n < cap ? n : cap - 1] = '\0';
    return (int)n;
}

const char *quill_token_text(const quill_model *m, quill_token token)
{
    if (api_check_handle(m, "quill_token_text", "model") != QUILL_OK ||
        check_token(m, token, "quill_token_text") != QUILL_OK)
        return NULL;
    return m->tok.pieces[token];
}

int quill_detokenize(const quill_model *m, const quill_token *tokens, int n, char *buf,
                     size_t cap)
{
    if (api_check_handle(m, "quill_detokenize", "model") != QUILL_OK)
        return -1;
    if (n < 0 || (n > 0 && !tokens))
        return api_fail("quill_detokenize: %d tokens at %p", n, (const void *)tokens);
    char *text;
    size_t len;
    Error err;
    if (tokenizer_decode(&m->tok, tokens, (size_t)n, &text, &len, &err) != 0)
        return api_error(&err);
    int status = api_copy_out(text, len, buf, cap);
    free(text);
    return status;
}

quill_token quill_token_bos(const quill_model *m)
{
    return m ? m->tok.bos_id : -1;
}

quill_token quill_token_eos(const quill_model *m)
{
    return m ? m->tok.eos_id : -1;
}

quill_token quill_token_eot(const quill_model *m)
{
    return m ? m->tok.eot_id : -1;
}

bool quill_token_is_end(const quill_model *m, quill_token token)
{
    return m && token >= 0 && (token == m->tok.eos_id || token == m->tok.eot_id);
}

/* ---- the chat format ------------------------------------------------------------------- */

static int chat_role(const char *role, ChatRole *out)
{
    static const char *const names[] = {"system", "user", "assistant"};
    for (int r = 0; r < 3; r++)
        if (role && strcmp(role, names[r]) == 0) {
            *out = (ChatRole)r;
            return QUILL_OK;
        }
    return QUILL_ERROR;
}

int quill_chat_format(const quill_model *m, const char *template_name,
                      const quill_chat_message *msgs, int n, bool add_generation_prompt,
                      char *buf, size_t cap)
{
    if (api_check_handle(m, "quill_chat_format", "model") != QUILL_OK)
        return -1;
    if (n < 0 || (n > 0 && !msgs))
        return api_fail("quill_chat_format: %d messages at %p", n, (const void *)msgs);
    ChatFamily family = template_name ? chat_family_from_name(template_name)
                                      : chat_family_from_gguf(m->file);
    if (family == CHAT_UNKNOWN)
        return template_name ? api_fail("quill_chat_format: unknown template \"%s\" (known: %s)",
                                        template_name, chat_family_names())
                             : api_fail("quill_chat_format: the model has no chat template "
                                        "quill recognises; name one (%s)", chat_family_names());
    ChatMessage *chat = malloc(((size_t)n + 1) * sizeof *chat);
    if (!chat)
        return api_fail_as(QUILL_ERROR_MEMORY, "quill_chat_format: out of memory");
    for (int i = 0; i < n; i++) {
        chat[i].content = msgs[i].content ? msgs[i].content : "";
        if (chat_role(msgs[i].role, &chat[i].role) != QUILL_OK) {
            free(chat);
            return api_fail("quill_chat_format: message %d has role \"%s\" (system, user or "
                            "assistant)", i, msgs[i].role ? msgs[i].role : "(NULL)");
        }
    }
    char *text;
    Error err;
    int status = chat_format(family, chat, n, add_generation_prompt, &text, &err);
    free(chat);
    if (status != 0)
        return api_error(&err);
    status = api_copy_out(text, strlen(text), buf, cap);
    free(text);
    return status;
}

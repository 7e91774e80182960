/* What both ABI tests share: the paths under ../shared, llama.cpp's greedy text read from
 * the .ref.json, and a greedy generation through quill_generate. Only <quill.h> and the C
 * library: the tests link nothing but libquill.so, -lm and -pthread. */
#ifndef QUILL_ABI_REFERENCE_H
#define QUILL_ABI_REFERENCE_H

#include <quill.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* make test-abi's code for a test that could not run (a missing ../shared file). */
enum { ABI_SKIP = 77 };

#define ABI_PROMPT "Once upon a time"
#define ABI_TOKENS 200 /* what the reference's greedy text holds */

/* $QUILL_SHARED/relative or ../shared/relative, in a static buffer. */
static const char *shared_path(const char *relative)
{
    static char path[2][4096];
    static int turn;
    const char *root = getenv("QUILL_SHARED");
    char *out = path[turn++ % 2];
    snprintf(out, sizeof path[0], "%s/%s", root && *root ? root : "../shared", relative);
    return out;
}

/* The whole file (malloc'd, NUL-terminated), or NULL. */
static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    rewind(f);
    char *text = malloc((size_t)size + 1);
    if (text && fread(text, 1, (size_t)size, f) == (size_t)size)
        text[size] = '\0';
    else {
        free(text);
        text = NULL;
    }
    fclose(f);
    return text;
}

static int hex_value(char c)
{
    return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
}

/* The bytes of the .ref.json's "greedy_text_hex" string (malloc'd, *n of them), found by a
 * search for the one field rather than a JSON parser; NULL when the file lacks it. */
static char *reference_text(const char *json, size_t *n)
{
    const char *key = "\"greedy_text_hex\"";
    const char *at = strstr(json, key);
    at = at ? strchr(at + strlen(key), '"') : NULL;
    if (!at)
        return NULL;
    at++;
    *n = strcspn(at, "\"") / 2;
    char *text = malloc(*n + 1);
    for (size_t i = 0; text && i < *n; i++)
        text[i] = (char)(hex_value(at[2 * i]) * 16 + hex_value(at[2 * i + 1]));
    return text;
}

/* The generated text, as the callback receives it. */
typedef struct {
    char *text;
    size_t len, cap;
} Text;

static bool append_text(const quill_token_event *ev, void *user)
{
    Text *t = user;
    if (t->len + ev->n_text > t->cap)
        return false; /* longer than the reference: cancelled, and the test fails */
    memcpy(t->text + t->len, ev->text, ev->n_text);
    t->len += ev->n_text;
    return true;
}

/* Generates ABI_TOKENS tokens greedily after the prompt on a context of its own (an F32
 * cache, as llama.cpp's reference ran with, computing on n_threads) and compares the text
 * with want[0..n). Returns 0 when they are equal, 1 otherwise (with a message on stderr). */
static int generate_and_compare(quill_model *m, int n_threads, const char *who,
                                const char *want, size_t n)
{
    quill_context_params cp = quill_context_params_default();
    cp.n_ctx = 256;
    cp.n_threads = n_threads;
    cp.cache_type = QUILL_CACHE_F32;
    quill_sampler_params sp = quill_sampler_params_default();
    quill_sampler_params_preset(&sp, "deterministic");
    quill_context *c = quill_context_new(m, &cp);
    quill_sampler *s = c ? quill_sampler_new(m, &sp) : NULL;
    Text got = {.text = malloc(n + 1), .cap = n};
    quill_generate_params gp = quill_generate_params_default();
    gp.max_tokens = ABI_TOKENS;
    gp.on_token = append_text;
    gp.user = &got;
    quill_finish_reason finish = QUILL_FINISH_CANCELLED;
    int status = s && got.text ? quill_generate(c, s, ABI_PROMPT, &gp, &finish) : QUILL_ERROR;
    int failed = 1;
    if (status != QUILL_OK)
        fprintf(stderr, "%s: %s\n", who, quill_last_error());
    else if (finish != QUILL_FINISH_LENGTH || got.len != n || memcmp(got.text, want, n) != 0)
        fprintf(stderr, "%s: finished with \"%s\" after %zu bytes, not llama.cpp's %zu:\n%.*s\n",
                who, quill_finish_reason_name(finish), got.len, n, (int)got.len, got.text);
    else
        failed = 0;
    free(got.text);
    quill_sampler_free(s);
    quill_context_free(c);
    return failed;
}

/* stories260K and llama.cpp's greedy text after the prompt. */
typedef struct {
    quill_model *model;
    char *want;
    size_t n;
} Reference;

/* Loads the model and the reference text; ABI_SKIP when ../shared lacks them, 1 on any
 * other failure. */
static int load_reference(Reference *r)
{
    const char *model = shared_path("models/stories260K.gguf");
    char *json = read_file(shared_path("models/stories260K.ref.json"));
    FILE *probe = fopen(model, "rb");
    if (!json || !probe) {
        printf("SKIP: ../shared/models/stories260K.gguf or its .ref.json is missing\n");
        free(json);
        if (probe)
            fclose(probe);
        return ABI_SKIP;
    }
    fclose(probe);
    r->want = reference_text(json, &r->n);
    free(json);
    quill_model_params mp = quill_model_params_default();
    mp.n_threads = 1;
    r->model = r->want ? quill_model_load(model, &mp) : NULL;
    if (!r->model) {
        fprintf(stderr, "%s\n",
                r->want ? quill_last_error() : "no greedy_text_hex in the .ref.json");
        free(r->want);
        return 1;
    }
    return 0;
}

static void reference_free(Reference *r)
{
    free(r->want);
    quill_model_free(r->model);
}

#endif

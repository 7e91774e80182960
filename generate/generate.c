/* quill generate: continue a prompt with a GGUF model.
 *
 *   prompt text -> tokens (a chat template first, when asked for) -> one pass through the
 *   model fills the KV cache -> a continuation streamed as it is generated (session.h);
 *   or several samples side by side (--num-samples), or beam search (--beam-size).
 * --interactive (quill chat) keeps the model loaded in a prompt loop: repl.c. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "beam.h"
#include "chat.h"
#include "cli.h"
#include "fileio.h"
#include "generate.h"
#include "jsonl.h"
#include "loader.h"
#include "matmul.h"
#include "options.h"
#include "repl.h"
#include "session.h"

/* The prompt's tokens: as plain text, or as the one user turn of a chat when a template
 * or a system prompt is asked for. */
static int prompt_tokens(const Tokenizer *tok, const GgufFile *file, const GenerateOptions *o,
                         int **ids, size_t *n, Error *err)
{
    if (!o->chat_template && !o->system)
        return tokenizer_encode(tok, o->prompt, strlen(o->prompt), tok->add_bos, ids, n, err);
    ChatFamily family;
    bool from_flag;
    if (generate_chat_family(o, file, &family, &from_flag, err) != 0)
        return -1; /* with either flag, a family is known or it is an error */
    if (o->verbose)
        generate_chat_family_report(family, from_flag);
    ChatMessage msgs[2];
    int n_msgs = 0;
    if (o->system)
        msgs[n_msgs++] = (ChatMessage){CHAT_ROLE_SYSTEM, o->system};
    msgs[n_msgs++] = (ChatMessage){CHAT_ROLE_USER, o->prompt};
    char *text;
    if (chat_format(family, msgs, n_msgs, true, &text, err) != 0)
        return -1;
    EncodeOptions opt = {.add_bos = tok->add_bos && !chat_template_writes_bos(family),
                         .parse_special = true};
    int status = tokenizer_encode_with(tok, text, strlen(text), opt, ids, n, err);
    free(text);
    return status;
}

/* ---- output --------------------------------------------------------------------------- */

/* --output-file's destination. A regular file (or a new one) is written atomically: under
 * a temporary name, renamed into place when complete, so a failed run leaves the old file.
 * Anything else is written through as it is: a pipe or a device (a shell's >(jq .)) cannot
 * be replaced, and a symbolic link (/dev/stdout) must not be, or the rename would put a
 * file where the link was. Either is opened before the generation, so that a path that
 * cannot be written (a missing directory) is an error before any work. */
typedef struct {
    AtomicFile atomic;
    FILE *direct;
} OutputFile;

static int output_file_open(OutputFile *f, const char *path, Error *err)
{
    struct stat st;
    memset(f, 0, sizeof *f);
    if (lstat(path, &st) != 0 || S_ISREG(st.st_mode))
        return atomic_file_open(&f->atomic, path, err);
    f->direct = fopen(path, "w");
    return f->direct ? 0 : error_set(err, "%s: cannot write: %s", path, strerror(errno));
}

static FILE *output_file_stream(const OutputFile *f)
{
    return f->direct ? f->direct : f->atomic.fp;
}

/* Completes the file (status 0), or leaves things as they were (status -1: an atomic file
 * is removed). Returns the status, -1 when the completion itself fails. */
static int output_file_close(OutputFile *f, const char *path, int status, Error *err)
{
    if (f->direct) {
        bool failed = ferror(f->direct) != 0;
        failed |= fclose(f->direct) != 0;
        f->direct = NULL;
        return status == 0 && failed ? error_set(err, "%s: write failed", path) : status;
    }
    if (status == 0 && f->atomic.fp)
        return atomic_file_commit(&f->atomic, err);
    atomic_file_abort(&f->atomic);
    return status;
}

/* Ends a single completion's output. On a terminal it ends with a newline, so that the
 * shell's prompt starts a line of its own; in a pipe or a file stdout holds exactly the
 * bytes written (with --no-echo, the generated ones, and nothing else). */
static void output_end(const GenerateOptions *o, const Completion *c)
{
    size_t prompt_len = strlen(o->prompt);
    char last = c->len > 0                  ? c->text[c->len - 1]
                : o->echo && prompt_len > 0 ? o->prompt[prompt_len - 1]
                                            : '\n'; /* nothing written */
    if (last != '\n' && isatty(STDOUT_FILENO))
        putchar('\n');
    fflush(stdout);
}

/* Completions found side by side: one is printed as a streamed one would be (the prompt
 * unless --no-echo, the text); several each after a separator line. */
static void completions_print(const GenerateOptions *o, const Completion *c, int n)
{
    if (n == 1) {
        if (o->echo)
            fputs(o->prompt, stdout);
        fwrite(c[0].text ? c[0].text : "", 1, c[0].len, stdout);
        output_end(o, &c[0]);
        return;
    }
    for (int i = 0; i < n; i++) {
        if (o->beam_size > 1)
            printf("%s--- beam %d of %d (score %.4f, %s) ---\n", i ? "\n" : "", i + 1, n,
                   c[i].score, finish_reason_name(c[i].finish));
        else
            printf("%s--- sample %d of %d (seed %llu, %s) ---\n", i ? "\n" : "", i + 1, n,
                   (unsigned long long)c[i].seed, finish_reason_name(c[i].finish));
        if (o->echo)
            fputs(o->prompt, stdout);
        fwrite(c[i].text ? c[i].text : "", 1, c[i].len, stdout);
    }
    if (n > 0)
        putchar('\n');
    fflush(stdout);
}

/* ---- a run -------------------------------------------------------------------------------- */

/* The continuation(s) the options ask for, after the prompt is in the session. */
static int generate_completions(Session *s, const GenerateOptions *o, Completion *c, int *n,
                                Error *err)
{
    if (o->beam_size > 1)
        return beam_search(s, o->beam_size, o->length_penalty, o->num_samples, c, n, err);
    *n = o->num_samples;
    if (o->num_samples > 1)
        return session_sample_many(s, o->num_samples, c, err);
    if (o->echo) {
        fputs(o->prompt, stdout);
        fflush(stdout);
    }
    return session_continue(s, generate_print_token, (void *)s->tok, c, err);
}

static int generate_run(const Model *m, const Tokenizer *tok, GenerateOptions *o, Error *err)
{
    if (o->show_probs && (o->num_samples > 1 || o->beam_size > 1))
        return error_set(err, "--show-probs follows one sequence: not with --num-samples or "
                              "--beam-size");
    int *prompt;
    size_t n_prompt;
    if (generate_stops_unescape(o, err) != 0 || prompt_tokens(tok, m->file, o, &prompt, &n_prompt, err) != 0)
        return -1;
    int limit = o->context > 0 ? o->context : m->config.context;
    if (n_prompt == 0 || (int)n_prompt >= limit) {
        free(prompt);
        return error_set(err, "the prompt has %zu token%s; the context holds %d, so between 1 "
                              "and %d fit (--context sets it)",
                         n_prompt, plural_s((long)n_prompt), limit, limit - 1);
    }
    /* the cache holds what the run can use: the whole context only when shifting */
    int wanted = (int)n_prompt + o->max_tokens;
    int n_ctx = o->context_shift || wanted > limit ? limit : wanted;
    int n_seq = o->beam_size > o->num_samples ? o->beam_size : o->num_samples;
    Session s;
    Completion c[64] = {0};
    int n = 0;
    OutputFile output = {0};
    int status = o->output_file ? output_file_open(&output, o->output_file, err) : 0;
    if (status == 0)
        status = generate_session_start(&s, o, m, tok, generate_seed(o), n_seq, n_ctx, err);
    if (status == 0) {
        status = session_feed(&s, prompt, (int)n_prompt, err);
        if (status == 0)
            status = generate_completions(&s, o, c, &n, err);
        if (status == 0 && (o->num_samples > 1 || o->beam_size > 1))
            completions_print(o, c, n);
        else if (status == 0)
            output_end(o, &c[0]);
        if (status == 0 && n == 1 && c[0].finish == FINISH_CONTEXT)
            fprintf(stderr, "quill: %s context of %d positions is full after %d token%s%s\n",
                    o->context > 0 ? "the" : "the model's", n_ctx, c[0].n_tokens,
                    plural_s(c[0].n_tokens),
                    o->beam_size > 1 ? "" : "; --context-shift keeps going");
        if (status == 0 && o->verbose && o->beam_size > 1 && n == 1)
            fprintf(stderr, "[the best beam: score %.4f, %s]\n", c[0].score,
                    finish_reason_name(c[0].finish));
        if (status == 0 && o->output_file)
            jsonl_write_completions(output_file_stream(&output), o, c, n);
        if (o->verbose)
            generate_session_report(&s, o);
        session_free(&s);
    }
    if (o->output_file)
        status = output_file_close(&output, o->output_file, status, err);
    for (int i = 0; i < n; i++)
        completion_free(&c[i]);
    free(prompt);
    return status;
}

int cmd_generate(int argc, char **argv, Error *err)
{
    GenerateOptions o;
    generate_options_default(&o);
    const char *model = NULL;
    int status = generate_parse_options(argc, argv, &o, &model, err);
    if (status == 0 && o.interactive)
        status = repl_run(model, &o, err);
    else if (status == 0) {
        compute_set_threads(o.threads);
        char path[4096];
        model_path_resolve(model, path, sizeof path);
        Model m;
        Tokenizer tok;
        status = model_file_load(path, &m, &tok, err);
        if (status == 0) {
            status = generate_run(&m, &tok, &o, err);
            tokenizer_free(&tok);
            model_free(&m);
        }
    }
    generate_options_free(&o);
    return status < 0 ? -1 : 0;
}

int cmd_chat(int argc, char **argv, Error *err)
{
    GenerateOptions o;
    generate_options_default(&o);
    const char *model = NULL;
    int status = generate_parse_options(argc, argv, &o, &model, err);
    if (status == 0)
        status = repl_run(model, &o, err);
    generate_options_free(&o);
    return status < 0 ? -1 : 0;
}

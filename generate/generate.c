/* quill generate: continue a prompt with a GGUF model.
 *
 * The one continuation streamed as it is generated is a client of the public API
 * (include/quill.h), as any program that embeds quill: quill_model_load, a context, a
 * sampler built from the flags, and quill_generate with a callback that writes each token's
 * text to stdout. Several samples side by side (--num-samples) and beam search
 * (--beam-size, --must-include) are not in the API: they step the sequences of one search
 * together (session.h, beam.h), in generate_search, on a session that options.c makes from
 * the model behind its handle.
 * --interactive (quill chat) keeps the model loaded in a prompt loop: repl.c. */
#include <errno.h>
#include <limits.h>
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
#include "options.h"
#include "quill.h"
#include "repl.h"
#include "session.h"

/* The prompt as quill_tokenize and quill_generate take it: the text, or the one user turn
 * of a chat when a template or a system prompt is asked for (control-token text then
 * becomes its tokens, and a template that writes bos gets none added). */
typedef struct {
    char *text;
    bool add_special, parse_special;
} Prompt;

static int prompt_of(const quill_model *m, const GenerateOptions *o, Prompt *p, Error *err)
{
    *p = (Prompt){.add_special = true};
    if (!o->chat_template && !o->system) {
        p->text = strdup(o->prompt);
        return p->text ? 0 : error_set(err, "out of memory");
    }
    ChatFamily family;
    bool from_flag;
    if (generate_chat_family(o, quill_model_chat_template(m), &family, &from_flag, err) != 0)
        return -1; /* with either flag, a family is known or it is an error */
    if (o->verbose)
        generate_chat_family_report(family, from_flag);
    quill_chat_message msgs[2];
    int n_msgs = 0;
    if (o->system)
        msgs[n_msgs++] = (quill_chat_message){"system", o->system};
    msgs[n_msgs++] = (quill_chat_message){"user", o->prompt};
    const char *name = chat_family_name(family);
    int len = quill_chat_format(m, name, msgs, n_msgs, true, NULL, 0);
    p->text = len >= 0 ? malloc((size_t)len + 1) : NULL;
    if (!p->text)
        return error_set(err, "%s", len < 0 ? quill_last_error() : "out of memory");
    quill_chat_format(m, name, msgs, n_msgs, true, p->text, (size_t)len + 1);
    p->add_special = !chat_template_writes_bos(family);
    p->parse_special = true;
    return 0;
}

int generate_tokenize(const quill_model *m, const char *text, size_t len, bool add_special,
                      bool parse_special, quill_token **ids, Error *err)
{
    if (len > INT_MAX - 2)
        return error_set(err, "the text has %zu bytes; at most %d are tokenized at once", len,
                         INT_MAX - 2);
    int cap = (int)len + 2, n = -1;
    while ((*ids = malloc((size_t)cap * sizeof **ids)) &&
           (n = quill_tokenize(m, text, len, add_special, parse_special, *ids, cap)) > cap) {
        free(*ids);
        cap = n;
    }
    if (!*ids)
        return error_set(err, "out of memory");
    return n < 0 ? error_set(err, "%s", quill_last_error()) : n;
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

/* The note on a single output that filled the context. */
static void context_full_note(const GenerateOptions *o, int n_ctx, const Completion *c, int n)
{
    if (n == 1 && c->finish == FINISH_CONTEXT)
        fprintf(stderr, "quill: %s context of %d positions is full after %d token%s%s\n",
                o->context > 0 ? "the" : "the model's", n_ctx, c->n_tokens,
                plural_s(c->n_tokens), o->beam_size > 1 ? "" : "; --context-shift keeps going");
}

/* One continuation streamed to stdout as it is generated, through quill.h: a context sized
 * for the run, the sampler of the flags, quill_generate with the printer as its callback. */
static int generate_stream(quill_model *m, GenerateOptions *o, const Prompt *prompt, int n_ctx,
                           Completion *c, Error *err)
{
    uint64_t seed = generate_seed(o);
    quill_sampler *s = generate_sampler_new(m, o, seed, err);
    quill_context *ctx = s ? generate_context_new(m, o, generate_guided(o) ? 2 : 1, n_ctx, err) : NULL;
    if (!ctx) {
        quill_sampler_free(s);
        return -1;
    }
    GeneratePrinter printer = {.model = m, .sampler = s, .show_probs = o->show_probs,
                               .ignore_eos = o->ignore_eos};
    quill_generate_params p = generate_params(o, &printer);
    p.add_special = prompt->add_special;
    p.parse_special = prompt->parse_special;
    if (o->echo) {
        fputs(o->prompt, stdout);
        fflush(stdout);
    }
    quill_finish_reason finish;
    int status = quill_generate(ctx, s, prompt->text, &p, &finish);
    if (status != 0)
        error_set(err, "%s", quill_last_error());
    else if (printer.status != 0)
        status = error_set(err, "%s", printer.err.msg);
    generate_print_finish(&printer, finish);
    *c = printer.record;
    c->seed = seed;
    c->finish = (FinishReason)finish;
    if (status == 0) {
        output_end(o, c);
        context_full_note(o, n_ctx, c, 1);
    }
    if (o->verbose)
        generate_report(ctx, s, seed);
    quill_sampler_free(s);
    quill_context_free(ctx);
    return status;
}

/* Names on stderr the words of --must-include that each output lacks; true when one
 * lacks any. */
static bool missed_words_report(const GenerateOptions *o, const StringList *words,
                                const Completion *c, int n)
{
    bool any = false;
    for (int i = 0; i < n; i++) {
        char who[64] = "the output";
        if (n > 1)
            snprintf(who, sizeof who, "beam %d of %d", i + 1, n);
        if (c[i].missed)
            generate_missed_words_report(who, (const char *const *)words->items, words->n,
                                         c[i].missed, o->max_tokens);
        any |= c[i].missed != 0;
    }
    return any;
}

/* Beam search, constrained by the words of --must-include when it names some. */
static int generate_beams(Session *s, const GenerateOptions *o, Completion *c, int *n,
                          bool *missed, Error *err)
{
    StringList words = {0};
    MustInclude must = {0};
    int status = generate_words_split(o->must_include, &words, err);
    if (status == 0)
        status = must_include_init(&must, s->tok, (const char *const *)words.items, words.n,
                                   err);
    if (status == 0)
        status = beam_search(s, o->beam_size, o->length_penalty, o->num_samples, &must, c, n,
                             err);
    if (status == 0) {
        completions_print(o, c, *n);
        *missed = missed_words_report(o, &words, c, *n);
    }
    must_include_free(&must);
    string_list_clear(&words);
    return status;
}

/* Several samples side by side (--num-samples) or beam search (--beam-size): searches over
 * several sequences, which quill.h does not offer; they run on the session (session.h) of
 * the model behind the handle, from the prompt's tokens. *missed: whether an output lacks
 * a word of --must-include. */
static int generate_search(quill_model *m, GenerateOptions *o, const quill_token *prompt,
                           int n_prompt, int n_ctx, Completion *c, int *n, bool *missed,
                           Error *err)
{
    int n_seq = o->beam_size > o->num_samples ? o->beam_size : o->num_samples;
    Session s;
    if (generate_session_start(&s, o, m, generate_seed(o), n_seq, n_ctx, err) != 0)
        return -1;
    Grammar grammar = {0}; /* each sample's and beam's grammar stage reads it */
    GrammarSource source = generate_grammar_source(o);
    int status = 0;
    if (grammar_source_flag(&source) && (status = grammar_source_load(&source, &grammar, err)) == 0)
        status = sampler_set_grammar(s.sampler, &grammar, s.tok, err);
    if (status == 0)
        status = session_feed(&s, prompt, n_prompt, err);
    *n = o->num_samples;
    if (status == 0 && o->beam_size > 1)
        status = generate_beams(&s, o, c, n, missed, err);
    else if (status == 0 && (status = session_sample_many(&s, o->num_samples, c, err)) == 0)
        completions_print(o, c, *n);
    if (status == 0)
        context_full_note(o, n_ctx, c, *n);
    if (status == 0 && o->verbose && o->beam_size > 1 && *n == 1)
        fprintf(stderr, "[the best beam: score %.4f, %s]\n", c[0].score,
                finish_reason_name(c[0].finish));
    if (o->verbose)
        generate_session_report(&s, o);
    session_free(&s);
    grammar_free(&grammar);
    return status;
}

int generate_guided_length(const quill_model *m, const char *guide, const char *negative,
                           const char *prompt, bool add_special, bool parse_special,
                           Error *err)
{
    const char *prefixes[2] = {guide ? guide : "", negative ? negative : ""};
    int longest = 0;
    for (int i = 0; i < 2; i++) {
        size_t n_prefix = strlen(prefixes[i]), n = n_prefix + strlen(prompt);
        char *joined = malloc(n + 1);
        if (!joined)
            return error_set(err, "out of memory");
        memcpy(joined, prefixes[i], n_prefix);
        strcpy(joined + n_prefix, prompt);
        quill_token *ids = NULL;
        int n_side = generate_tokenize(m, joined, n, add_special, parse_special, &ids, err);
        free(ids);
        free(joined);
        if (n_side < 0)
            return -1;
        longest = n_side > longest ? n_side : longest;
    }
    return longest;
}

static int generate_run(quill_model *m, GenerateOptions *o, Error *err)
{
    if (o->show_probs && (o->num_samples > 1 || o->beam_size > 1))
        return error_set(err, "--show-probs follows one sequence: not with --num-samples or "
                              "--beam-size");
    Prompt prompt = {0};
    quill_token *ids = NULL;
    int n_prompt = generate_stops_unescape(o, err) == 0 && prompt_of(m, o, &prompt, err) == 0
                       ? generate_tokenize(m, prompt.text, strlen(prompt.text),
                                           prompt.add_special, prompt.parse_special, &ids, err)
                       : -1;
    if (n_prompt > 0 && generate_guided(o)) /* the cache holds the longer side */
        n_prompt = generate_guided_length(m, generate_guide_text(o), o->negative_prompt,
                                          prompt.text, prompt.add_special,
                                          prompt.parse_special, err);
    int limit = o->context > 0 ? o->context : quill_model_context_length(m);
    int status = n_prompt < 0 ? -1 : 0;
    if (status == 0 && (n_prompt == 0 || n_prompt >= limit))
        status = error_set(err, "the prompt has %d token%s; the context holds %d, so between 1 "
                                "and %d fit (--context sets it)",
                           n_prompt, plural_s(n_prompt), limit, limit - 1);
    /* the cache holds what the run can use: the whole context only when shifting */
    int wanted = n_prompt + o->max_tokens;
    int n_ctx = o->context_shift || wanted > limit ? limit : wanted;
    bool search = o->num_samples > 1 || o->beam_size > 1, missed = false;
    Completion c[64] = {0};
    int n = 1;
    OutputFile output = {0};
    if (status == 0 && o->output_file)
        status = output_file_open(&output, o->output_file, err);
    if (status == 0)
        status = search ? generate_search(m, o, ids, n_prompt, n_ctx, c, &n, &missed, err)
                        : generate_stream(m, o, &prompt, n_ctx, &c[0], err);
    if (status == 0 && o->output_file)
        jsonl_write_completions(output_file_stream(&output), o, c, n);
    if (o->output_file)
        status = output_file_close(&output, o->output_file, status, err);
    for (int i = 0; i < n; i++)
        completion_free(&c[i]);
    free(ids);
    free(prompt.text);
    return status == 0 && missed ? GENERATE_EXIT_MISSED_WORDS : status;
}

/* --must-include searches with beams: --beam-size when it is more than 1, else
 * generate_must_include_beams' number. */
static int must_include_beams(GenerateOptions *o, Error *err)
{
    StringList words = {0};
    if (generate_words_split(o->must_include, &words, err) != 0)
        return -1;
    if (words.n > 0 && o->beam_size == 1)
        o->beam_size = generate_must_include_beams(words.n);
    string_list_clear(&words);
    return 0;
}

/* A grammar works with every way of generating (each sample and beam has its own state,
 * each chat turn starts it again), but not with --must-include, whose beams take words'
 * tokens the grammar may refuse. A grammar that cannot be built, or two given at once, is
 * refused here too, before the model loads. */
static int grammar_use_check(const GenerateOptions *o, Error *err)
{
    GrammarSource source = generate_grammar_source(o);
    const char *flag = grammar_source_flag(&source);
    if (flag && o->must_include)
        return error_set(err, "%s and --must-include: one or the other (the words' tokens "
                              "may be ones the grammar refuses)", flag);
    Grammar g;
    if (flag && grammar_source_load(&source, &g, err) != 0)
        return -1;
    if (flag)
        grammar_free(&g);
    return 0;
}

int cmd_generate(int argc, char **argv, Error *err)
{
    GenerateOptions o;
    generate_options_default(&o);
    const char *model = NULL;
    int status = generate_parse_options(argc, argv, &o, &model, err);
    if (status == 0 && !o.interactive)
        status = must_include_beams(&o, err);
    if (status == 0)
        status = grammar_use_check(&o, err);
    if (status == 0)
        status = generate_guidance_check(&o, o.interactive, err);
    if (status == 0 && o.interactive)
        status = repl_run(model, &o, err);
    else if (status == 0) {
        quill_model_params mp = quill_model_params_default();
        mp.n_threads = o.threads;
        quill_model *m = quill_model_load(model, &mp);
        status = m ? generate_run(m, &o, err) : error_set(err, "%s", quill_last_error());
        quill_model_free(m);
    }
    generate_options_free(&o);
    /* the parser's 1 is --help, printed: a success */
    return status < 0 ? -1 : status == GENERATE_EXIT_MISSED_WORDS ? status : 0;
}

int cmd_chat(int argc, char **argv, Error *err)
{
    GenerateOptions o;
    generate_options_default(&o);
    const char *model = NULL;
    int status = generate_parse_options(argc, argv, &o, &model, err);
    if (status == 0)
        status = grammar_use_check(&o, err);
    if (status == 0)
        status = generate_guidance_check(&o, true, err);
    if (status == 0)
        status = repl_run(model, &o, err);
    generate_options_free(&o);
    return status < 0 ? -1 : 0;
}

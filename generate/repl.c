/* The interactive mode: quill generate --interactive, or quill chat. The model stays loaded
 * and so does the KV cache: each line goes through the model after what is already there,
 * and only the new text is computed.
 *
 *   plain model  each line continues the text so far (the reply streams after it)
 *   chat model   each line is a user turn in the model's chat template (or the one
 *                --chat-template names); the reply is the assistant's turn
 *
 * Commands: /help, /set key=value (any generation flag that applies to a chat), /status,
 * /reset, /quit. Lines between two """ lines are one input. Ctrl+C stops a reply and
 * returns to the prompt; at the prompt it drops the line typed, or on an empty line leaves
 * (lineread.c), as the end of input does, with exit status 0.
 *
 * A chat streams one sampled reply per turn, so the flags of quill generate's other outputs
 * (--prompt, --beam-size, --num-samples, --output-file) are refused, not ignored. With
 * words that must appear (--must-include, /set must-include=...) a turn is a constrained
 * beam search instead, its reply printed whole at its end.
 *
 * The REPL is a client of the public API (quill.h): each turn is one quill_generate on
 * sequence 0 after what the cache holds; /set makes a new sampler and replays the
 * sequence's tokens into it; /reset clears the sequence and the sampler. The turn's text
 * comes from chat.h: a chat template's continuation (the turns after the ones in the cache)
 * is more than quill_chat_format, which formats a whole conversation, says. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chat.h"
#include "generate.h"
#include "lineread.h"
#include "quill.h"
#include "repl.h"

/* The context a conversation gets when --context does not say: the model's, up to this (a
 * model trained for 128k positions would otherwise reserve gigabytes of cache). */
enum { REPL_DEFAULT_CONTEXT = 4096, REPL_MAX_MESSAGES = 4096 };

/* The generation settings that mean nothing in a chat (they shape quill generate's output:
 * its prompt, the echo of it, several samples or beams, a file; guidance, which prefixes
 * one plain prompt), and those fixed once the session has started (the cache's size and
 * type, the threads, the template). /status and /set show neither the first nor, for /set,
 * the second. */
static const char *const NOT_IN_CHAT[] = {"prompt",      "echo",           "interactive",
                                          "beam-size",   "length-penalty", "num-samples",
                                          "output-file", "guide",          "guide-attribute",
                                          "negative-prompt", "guide-strength", NULL};
static const char *const FIXED_IN_CHAT[] = {"context",       "cache-type", "threads",
                                            "chat-template", "lora",       "lora-scale",
                                            NULL};

static bool name_in(const char *const *names, const char *name)
{
    for (; *names; names++)
        if (strcmp(*names, name) == 0)
            return true;
    return false;
}

/* Set while a reply is being generated; repl_cancel is quill_generate's cancel flag, set
 * from the signal handler (a sig_atomic_t, which is an int here, as the flag's type is). */
_Static_assert(_Generic((sig_atomic_t)0, int: 1, default: 0), "sig_atomic_t is an int");
static volatile sig_atomic_t repl_generating = 0;
static volatile sig_atomic_t repl_cancel = 0;

/* Ctrl+C as a signal: stops a reply the first time; a second time, or at a prompt read from
 * a pipe, leaves. (At a terminal's prompt, the line editor reads Ctrl+C as a key.) */
static void repl_on_interrupt(int signo)
{
    (void)signo;
    if (!repl_generating || repl_cancel) {
        static const char bye[] = "\n";
        ssize_t ignored = write(STDOUT_FILENO, bye, sizeof bye - 1);
        (void)ignored;
        _exit(0);
    }
    repl_cancel = 1;
}

typedef struct {
    quill_model *model;
    quill_context *ctx;  /* the conversation: sequence 0 */
    quill_sampler *sampler;
    bool *from_input;    /* per position of the sequence: an input's token (the sampler's
                            prompt tokens, which --no-penalize-prompt leaves out) */
    int n_from_input;
    GenerateOptions *o;
    uint64_t seed;       /* the sampler's (--seed, or drawn when it is -1) */
    ChatFamily family;   /* CHAT_UNKNOWN: plain completion */
    ChatMessage messages[REPL_MAX_MESSAGES];
    char *owned[REPL_MAX_MESSAGES]; /* the messages' texts */
    int n_messages;
    int n_formatted;     /* messages already in the cache */
    StringList values;   /* the texts of /set string settings */
    bool terminal;
} Repl;

static void repl_help(FILE *out)
{
    fprintf(out, "commands:\n"
                 "  /set key=value   change a setting (e.g. /set temperature=0, /set top-k=50,\n"
                 "                   /set max-tokens=100, /set samplers=top-k,temperature);\n"
                 "                   /set alone lists them\n"
                 "  /status          every setting and its value, and the context used\n"
                 "  /reset           forget the conversation (and the KV cache)\n"
                 "  /help            this list\n"
                 "  /quit            leave (so do Ctrl+D, and Ctrl+C on an empty line)\n"
                 "  \"\"\"              on its own line: start or end an input of several lines\n");
}

/* ---- the conversation -------------------------------------------------------------------- */

static void messages_clear(Repl *r)
{
    for (int i = 0; i < r->n_messages; i++)
        free(r->owned[i]);
    r->n_messages = 0;
    r->n_formatted = 0;
}

static int message_add(Repl *r, ChatRole role, const char *text, Error *err)
{
    if (r->n_messages == REPL_MAX_MESSAGES)
        return error_set(err, "the conversation has %d messages: /reset to start again",
                         REPL_MAX_MESSAGES);
    char *copy = strdup(text);
    if (!copy)
        return error_set(err, "out of memory");
    r->owned[r->n_messages] = copy;
    r->messages[r->n_messages++] = (ChatMessage){role, copy};
    return 0;
}

/* The text a user's input adds to the cache: in chat mode the turn in the template (all of
 * the conversation the first time, then only what follows the last reply); otherwise the
 * input itself. */
static int turn_text(Repl *r, const char *input, char **text, Error *err)
{
    if (r->family == CHAT_UNKNOWN) {
        *text = strdup(input);
        return *text ? 0 : error_set(err, "out of memory");
    }
    if (r->n_messages == 0 && r->o->system && message_add(r, CHAT_ROLE_SYSTEM, r->o->system, err))
        return -1;
    if (message_add(r, CHAT_ROLE_USER, input, err) != 0)
        return -1;
    if (r->n_formatted == 0)
        return chat_format(r->family, r->messages, r->n_messages, true, text, err);
    return chat_format_continuation(r->family, r->messages, r->n_messages, r->n_formatted, true,
                                    text, err);
}

/* The reply as the template expects it back (llama2 and mistral write the space after
 * [/INST] as part of the reply's first token: chat.h). */
static const char *reply_content(const Repl *r, const char *reply)
{
    bool spaced = r->family == CHAT_LLAMA2 || r->family == CHAT_MISTRAL;
    return spaced && reply[0] == ' ' ? reply + 1 : reply;
}

/* The sampler of the settings now, with the tokens the sequence holds replayed into it,
 * so that the penalties and bad words see the conversation so far (each input's tokens as
 * prompt tokens). */
static int repl_sampler_new(Repl *r, Error *err)
{
    quill_sampler *s = generate_sampler_new(r->model, r->o, r->seed, err);
    int n = s && r->ctx ? quill_seq_tokens(r->ctx, 0, NULL, 0) : 0;
    quill_token *ids = s ? malloc(((size_t)n + 1) * sizeof *ids) : NULL;
    if (!ids) {
        quill_sampler_free(s);
        return s ? error_set(err, "out of memory") : -1;
    }
    quill_seq_tokens(r->ctx, 0, ids, n);
    for (int i = 0; i < n; i++)
        quill_sampler_accept(s, ids[i], i < r->n_from_input && r->from_input[i]);
    free(ids);
    quill_sampler_free(r->sampler);
    r->sampler = s;
    return 0;
}

/* After a turn: the sequence's last n_generated positions came from the model and the
 * n_input before them from the input. A context shift during the turn dropped older
 * positions and kept the sequence's end, so the marks before the turn keep their distance
 * from the end. */
static int repl_mark_turn(Repl *r, int n_input, int n_generated, Error *err)
{
    int len = quill_seq_length(r->ctx, 0);
    int n_turn = n_input + n_generated < len ? n_input + n_generated : len;
    int n_before = len - n_turn < r->n_from_input ? len - n_turn : r->n_from_input;
    bool *marks = calloc((size_t)len + 1, sizeof *marks);
    if (!marks)
        return error_set(err, "out of memory");
    for (int i = 1; i <= n_before; i++) /* the earlier marks, counted from the turn back */
        marks[len - n_turn - i] = r->from_input[r->n_from_input - i];
    for (int i = len - n_turn; i < len - n_generated; i++)
        marks[i] = true;
    free(r->from_input);
    r->from_input = marks;
    r->n_from_input = len;
    return 0;
}

/* Whether a turn's text gets a bos of ours at the start of the sequence: not when the chat
 * template writes one. */
static bool turn_adds_bos(const Repl *r)
{
    return r->family == CHAT_UNKNOWN || !chat_template_writes_bos(r->family);
}

/* The generation settings of a turn: the reply's limits, and how the turn's text becomes
 * tokens (a template's control tokens parsed; no bos of our own when it writes one). */
static quill_generate_params turn_params(const Repl *r, GeneratePrinter *printer)
{
    quill_generate_params p = generate_params(r->o, printer);
    p.add_special = turn_adds_bos(r);
    p.parse_special = r->family != CHAT_UNKNOWN;
    p.cancel = (volatile int *)&repl_cancel;
    return p;
}

/* The end of a turn whose input's n_input tokens and the reply's n_generated are the
 * sequence's last: the marks of which positions were input, the reply in the chat's
 * messages, the notes on a reply cut short. */
static int turn_end(Repl *r, int n_input, int n_generated, const char *reply,
                    quill_finish_reason finish, Error *err)
{
    int status = repl_mark_turn(r, n_input, n_generated, err);
    r->n_formatted = r->n_messages;
    if (status == 0 && r->family != CHAT_UNKNOWN) {
        status = message_add(r, CHAT_ROLE_ASSISTANT, reply_content(r, reply), err);
        r->n_formatted = r->n_messages;
    }
    if (status == 0 && finish == QUILL_FINISH_CANCELLED)
        printf("\n[stopped]");
    if (status == 0 && finish == QUILL_FINISH_CONTEXT)
        printf("\n[the context is full: /reset to start again]");
    putchar('\n');
    fflush(stdout);
    return status;
}

/* A turn's text through the model, then the reply sampled and streamed. */
static int sampled_turn(Repl *r, const char *text, Error *err)
{
    GeneratePrinter printer = {.model = r->model, .sampler = r->sampler,
                               .show_probs = r->o->show_probs, .ignore_eos = r->o->ignore_eos};
    quill_generate_params p = turn_params(r, &printer);
    int n_input = quill_context_perf(r->ctx).n_prompt_tokens;
    quill_finish_reason finish;
    repl_cancel = 0;
    repl_generating = 1;
    int status = quill_generate(r->ctx, r->sampler, text, &p, &finish);
    repl_generating = 0;
    if (status != 0 || printer.status != 0) {
        completion_free(&printer.record);
        return error_set(err, "%s", status != 0 ? quill_last_error() : printer.err.msg);
    }
    generate_print_finish(&printer, finish);
    n_input = quill_context_perf(r->ctx).n_prompt_tokens - n_input;
    const Completion *reply = &printer.record;
    status = turn_end(r, n_input, reply->n_tokens - (finish == QUILL_FINISH_CONTEXT),
                      reply->text ? reply->text : "", finish, err);
    completion_free(&printer.record);
    return status;
}

/* The whole conversation up to the reply, a beam search's prompt (malloc'd): a chat's
 * messages in its template (the turn's among them), or the text so far (the sequence's
 * tokens as text) and the turn's text. */
static int conversation_with(const Repl *r, const char *text, char **all, Error *err)
{
    if (r->family != CHAT_UNKNOWN)
        return chat_format(r->family, r->messages, r->n_messages, true, all, err);
    int n = quill_seq_tokens(r->ctx, 0, NULL, 0);
    quill_token *ids = malloc(((size_t)n + 1) * sizeof *ids);
    int len = ids ? quill_detokenize(r->model, ids, quill_seq_tokens(r->ctx, 0, ids, n), NULL, 0)
                  : -1;
    *all = len >= 0 ? malloc((size_t)len + strlen(text) + 1) : NULL;
    if (*all) {
        quill_detokenize(r->model, ids, n, *all, (size_t)len + 1);
        strcpy(*all + len, text);
    }
    free(ids);
    return *all ? 0 : error_set(err, "out of memory");
}

/* Feeds text to the conversation's sequence without generating: the count of its tokens,
 * or -1. */
static int feed_text(Repl *r, const char *text, bool special, Error *err)
{
    quill_generate_params p = quill_generate_params_default();
    p.max_tokens = 0;
    p.add_special = special && turn_adds_bos(r);
    p.parse_special = special && r->family != CHAT_UNKNOWN;
    int before = quill_context_perf(r->ctx).n_prompt_tokens;
    if (text[0] && quill_generate(r->ctx, r->sampler, text, &p, NULL) != 0)
        return error_set(err, "%s", quill_last_error());
    return quill_context_perf(r->ctx).n_prompt_tokens - before;
}

/* The best text of a constrained beam search from the conversation and text, on a context
 * of its own (words[0..n_words) must appear), printed, and the words it lacks named. */
static int beam_reply(Repl *r, const char *text, const StringList *words, char **reply,
                      quill_finish_reason *finish, Error *err)
{
    char *prompt = NULL;
    quill_token *ids = NULL;
    bool chat = r->family != CHAT_UNKNOWN;
    bool bos = turn_adds_bos(r);
    int n_prompt = conversation_with(r, text, &prompt, err) == 0
                       ? generate_tokenize(r->model, prompt, strlen(prompt), bos, chat, &ids, err)
                       : -1;
    int beams = generate_must_include_beams(words->n), room = quill_context_n_ctx(r->ctx);
    int n_ctx = n_prompt + r->o->max_tokens + 1 < room ? n_prompt + r->o->max_tokens + 1 : room;
    quill_context *c = n_prompt > 0 ? generate_context_new(r->model, r->o, beams, n_ctx, err)
                                     : NULL;
    quill_sampler *s = c ? generate_sampler_new(r->model, r->o, r->seed, err) : NULL;
    quill_beam_params p = quill_beam_params_default();
    p.beam_size = beams;
    p.max_tokens = r->o->max_tokens;
    p.stop = (const char *const *)r->o->stop.items;
    p.n_stop = r->o->stop.n;
    p.ignore_eos = r->o->ignore_eos;
    p.add_special = bos;
    p.parse_special = chat;
    p.must_include = (const char *const *)words->items;
    p.n_must_include = words->n;
    quill_beam_result best;
    int n = s ? quill_beam_search(c, s, prompt, &p, &best, 1) : -1;
    if (n == 1) {
        fwrite(best.text, 1, best.n_text, stdout);
        if (best.missed)
            generate_missed_words_report("the reply", p.must_include, words->n, best.missed,
                                         p.max_tokens);
        *reply = best.text;
        *finish = best.finish;
    } else if (s) {
        error_set(err, "%s", quill_last_error());
    }
    quill_sampler_free(s);
    quill_context_free(c);
    free(ids);
    free(prompt);
    return n == 1 ? 0 : -1;
}

/* A turn with words that must appear: the reply of a constrained beam search, then the
 * turn's text and the reply fed to the conversation, as if sampled there. */
static int beam_turn(Repl *r, const char *text, const StringList *words, Error *err)
{
    char *reply = NULL;
    quill_finish_reason finish;
    int status = beam_reply(r, text, words, &reply, &finish, err);
    int n_input = status == 0 ? feed_text(r, text, true, err) : -1;
    int n_reply = n_input >= 0 ? feed_text(r, reply, false, err) : -1;
    status = n_reply >= 0 ? turn_end(r, n_input, n_reply, reply, finish, err) : -1;
    if (status == 0)
        status = repl_sampler_new(r, err); /* the reply's tokens as generated ones */
    free(reply);
    return status;
}

/* One input: its text through the model, then the reply: sampled, or with words that
 * must appear found by beam search. */
static int repl_turn(Repl *r, const char *input, Error *err)
{
    char *text;
    StringList words = {0};
    if (generate_words_split(r->o->must_include, &words, err) != 0)
        return -1;
    int status = turn_text(r, input, &text, err);
    if (status == 0) {
        status = words.n > 0 ? beam_turn(r, text, &words, err) : sampled_turn(r, text, err);
        free(text);
    }
    string_list_clear(&words);
    return status;
}

/* ---- commands ---------------------------------------------------------------------------- */

/* The settings that apply to a chat, into flags (GENERATE_MAX_FLAGS of room), with r->o's
 * fields as destinations; only those /set may change when `changeable`. Returns how many. */
static int chat_settings(Repl *r, Flag *flags, bool changeable)
{
    Flag all[GENERATE_MAX_FLAGS];
    int n_all = generate_options_flags(r->o, all), n = 0;
    for (int i = 0; i < n_all; i++)
        if (!name_in(NOT_IN_CHAT, all[i].name) &&
            !(changeable && name_in(FIXED_IN_CHAT, all[i].name)))
            flags[n++] = all[i];
    return n;
}

/* "/set key=value": a generation flag that applies to a chat, parsed as on the command
 * line. */
static int repl_set(Repl *r, const char *arg, Error *err)
{
    const char *eq = strchr(arg, '=');
    if (!eq)
        return error_set(err, "/set needs key=value, e.g. /set temperature=0.5");
    Flag flags[GENERATE_MAX_FLAGS];
    int n_flags = generate_options_flags(r->o, flags);
    const Flag *f = cli_flag_find(flags, n_flags, arg, (size_t)(eq - arg));
    if (!f)
        return error_set(err, "/set: unknown setting '%.*s' (/set alone lists them)",
                         (int)(eq - arg), arg);
    if (name_in(NOT_IN_CHAT, f->name))
        return error_set(err, "/set %s: not a chat setting (a chat streams one reply per "
                              "turn; %s is for quill generate)", f->name, f->name);
    if (name_in(FIXED_IN_CHAT, f->name))
        return error_set(err, "/set %s: fixed for this session (give it on the command line)",
                         f->name);
    /* a string setting points at its text, so the text lives as long as the session */
    if (string_list_append(&r->values, eq + 1, err) != 0)
        return -1;
    const char *value = r->values.items[r->values.n - 1];
    char what[64];
    snprintf(what, sizeof what, "/set %s", f->name);
    if (f->type == FLAG_LIST)
        string_list_clear(f->dest);
    int status = cli_flag_set(f, value, what, err);
    if (status == 0 && strcmp(f->name, "preset") == 0)
        status = generate_options_apply_preset(r->o, err);
    if (status == 0 && strcmp(f->name, "stop") == 0)
        status = generate_stops_unescape(r->o, err);
    if (status == 0 && strcmp(f->name, "seed") == 0)
        r->seed = generate_seed(r->o);
    return status == 0 ? repl_sampler_new(r, err) : -1;
}

/* Runs a /command; returns 1 for /quit. A bad command is one line on stderr, and the
 * session goes on. */
static int repl_command(Repl *r, const char *line)
{
    Error err = {{0}};
    int status = 0;
    if (strcmp(line, "/quit") == 0 || strcmp(line, "/exit") == 0)
        return 1;
    if (strcmp(line, "/help") == 0) {
        repl_help(stdout);
    } else if (strcmp(line, "/status") == 0) {
        Flag flags[GENERATE_MAX_FLAGS];
        cli_write_flag_values(stdout, flags, chat_settings(r, flags, false));
        printf("  %-20s %d of %d positions\n", "(context used)", quill_seq_length(r->ctx, 0),
               quill_context_n_ctx(r->ctx));
        printf("  %-20s %llu\n", "(seed in use)", (unsigned long long)r->seed);
    } else if (strcmp(line, "/set") == 0) {
        Flag flags[GENERATE_MAX_FLAGS];
        printf("/set key=value changes one of these (now):\n");
        cli_write_flag_values(stdout, flags, chat_settings(r, flags, true));
    } else if (strcmp(line, "/reset") == 0) {
        quill_seq_clear(r->ctx, 0);
        quill_sampler_reset(r->sampler);
        r->n_from_input = 0;
        messages_clear(r);
        printf("[the conversation is forgotten]\n");
    } else if (strncmp(line, "/set ", 5) == 0) {
        status = repl_set(r, line + 5, &err);
        if (status == 0)
            printf("[%s]\n", line + 5);
    } else {
        status = error_set(&err, "unknown command %s (/help lists them)", line);
    }
    if (status != 0)
        fprintf(stderr, "quill: %s\n", err.msg);
    fflush(stdout);
    return 0;
}

/* The next input: a line, or the lines between two """ lines joined by newlines. NULL at
 * the end of input. */
static char *repl_read_input(const Repl *r)
{
    char *line = line_read(r->terminal ? "> " : "");
    if (!line || strcmp(line, "\"\"\"") != 0)
        return line;
    free(line);
    size_t len = 0;
    char *text = calloc(1, 1);
    char *next;
    while (text && (next = line_read(r->terminal ? ". " : "")) && strcmp(next, "\"\"\"") != 0) {
        char *grown = realloc(text, len + strlen(next) + 2);
        if (grown) {
            len += (size_t)sprintf(grown + len, "%s%s", len ? "\n" : "", next);
            text = grown;
        }
        free(next);
    }
    return text;
}

static int repl_loop(Repl *r)
{
    if (r->terminal)
        printf("quill chat: %s. /help lists the commands.\n",
               r->family == CHAT_UNKNOWN ? "each line continues the text"
                                         : "each line is your turn");
    char *input;
    while ((input = repl_read_input(r))) {
        int quit = 0;
        Error err = {{0}};
        if (input[0] == '/')
            quit = repl_command(r, input);
        else if (input[0] && repl_turn(r, input, &err) != 0)
            fprintf(stderr, "quill: %s\n", err.msg);
        free(input);
        if (quit)
            break;
    }
    return 0;
}

/* The flags of quill generate's other outputs, when given: an error that names them. */
static int refuse_generate_only_flags(const GenerateOptions *o, Error *err)
{
    GenerateOptions d;
    generate_options_default(&d);
    const struct {
        const char *flag;
        bool given;
    } flags[] = {
        {"--prompt", o->prompt[0] != '\0'},
        {"--beam-size", o->beam_size != d.beam_size},
        {"--length-penalty", o->length_penalty != d.length_penalty},
        {"--num-samples", o->num_samples != d.num_samples},
        {"--output-file", o->output_file != NULL},
    };
    enum { N = sizeof flags / sizeof *flags };
    int n_given = 0, left;
    for (int i = 0; i < N; i++)
        n_given += flags[i].given;
    if (n_given == 0)
        return 0;
    char given[128] = ""; /* "--a, --b and --c" */
    left = n_given;
    for (int i = 0; i < N; i++) {
        if (!flags[i].given)
            continue;
        size_t used = strlen(given);
        snprintf(given + used, sizeof given - used, "%s%s", flags[i].flag,
                 left == 1 ? "" : left == 2 ? " and " : ", ");
        left--;
    }
    return error_set(err, "quill chat streams one reply per turn: %s %s for quill generate",
                     given, n_given == 1 ? "is" : "are");
}

int repl_run(const char *model_arg, GenerateOptions *o, Error *err)
{
    if (refuse_generate_only_flags(o, err) != 0)
        return -1;
    quill_model_params mp = quill_model_params_default();
    mp.n_threads = o->threads;
    quill_model *m = quill_model_load(model_arg, &mp);
    if (!m)
        return error_set(err, "%s", quill_last_error());
    Repl r = {.model = m, .o = o, .terminal = line_input_is_terminal()};
    bool from_flag;
    int status = generate_chat_family(o, quill_model_chat_template(m), &r.family, &from_flag,
                                      err);
    if (status == 0 && o->verbose)
        generate_chat_family_report(r.family, from_flag);
    int n_ctx = o->context > 0 ? o->context : quill_model_context_length(m);
    n_ctx = o->context > 0 || n_ctx < REPL_DEFAULT_CONTEXT ? n_ctx : REPL_DEFAULT_CONTEXT;
    o->echo = false;
    r.seed = generate_seed(o);
    if (status == 0)
        status = generate_stops_unescape(o, err);
    if (status == 0)
        status = repl_sampler_new(&r, err);
    if (status == 0 && !(r.ctx = generate_context_new(m, o, 1, n_ctx, err)))
        status = -1;
    if (status == 0) {
        struct sigaction sa = {.sa_handler = repl_on_interrupt};
        sigaction(SIGINT, &sa, NULL);
        status = repl_loop(&r);
        if (o->verbose)
            generate_report(r.ctx, r.sampler, r.seed);
    }
    messages_clear(&r);
    string_list_clear(&r.values);
    free(r.from_input);
    quill_sampler_free(r.sampler);
    quill_context_free(r.ctx);
    quill_model_free(m);
    return status;
}

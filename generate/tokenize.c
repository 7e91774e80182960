/* quill tokenize: the token ids of a text under a GGUF file's tokenizer (any GGUF with
 * tokenizer.ggml.* keys, vocab-only files included), through the public API (quill.h): the
 * model loaded with vocab_only, quill_tokenize, quill_token_text. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buffer.h"
#include "cli.h"
#include "fileio.h"
#include "generate.h"
#include "quill.h"

typedef struct {
    const char *file;
    bool from_stdin;
    bool no_bos;
    bool parse_special;
    bool pieces;
} TokenizeOptions;

static int stdin_read_all(char **text, size_t *len, Error *err)
{
    size_t cap = 0, n = 0, got;
    char *buf = NULL;
    do {
        if (buffer_reserve(&buf, &cap, n + 1, 4096, "standard input", err) != 0) {
            free(buf);
            return -1;
        }
        got = fread(buf + n, 1, cap - n, stdin);
        n += got;
    } while (got > 0);
    *text = buf;
    *len = n;
    return 0;
}

/* Gets the text from --file, --stdin or the TEXT argument (exactly one of them). */
static int tokenize_input(const TokenizeOptions *o, const char *arg, char **text, size_t *len,
                          Error *err)
{
    int sources = (o->file != NULL) + o->from_stdin + (arg != NULL);
    if (sources != 1)
        return error_set(err, "give the text one way: --file F, --stdin or a TEXT argument");
    if (o->file)
        return file_read_all(o->file, text, len, err);
    if (o->from_stdin)
        return stdin_read_all(text, len, err);
    *text = strdup(arg);
    *len = strlen(arg);
    return *text ? 0 : error_set(err, "out of memory");
}

static void print_tokens(const quill_model *m, const quill_token *ids, int n, bool pieces)
{
    for (int i = 0; i < n; i++) {
        if (pieces)
            printf("%d '%s'\n", ids[i], quill_token_text(m, ids[i]));
        else
            printf(i ? " %d" : "%d", ids[i]);
    }
    if (!pieces)
        putchar('\n');
}

int cmd_tokenize(int argc, char **argv, Error *err)
{
    TokenizeOptions o = {0};
    const Flag flags[] = {
        {"file", FLAG_STRING, &o.file, 0, 0, "read the text from this file"},
        {"stdin", FLAG_SWITCH, &o.from_stdin, 0, 0, "read the text from standard input"},
        {"no-bos", FLAG_SWITCH, &o.no_bos, 0, 0, "do not put the bos token first"},
        {"special", FLAG_SWITCH, &o.parse_special, 0, 0,
         "control-token text (<|im_start|>, <s>) becomes its token"},
        {"pieces", FLAG_SWITCH, &o.pieces, 0, 0, "print each token's piece too"},
    };
    const CommandSpec spec = {
        .usage = "usage: quill tokenize MODEL [--file F | --stdin | TEXT] [options]\n\n"
                 "Prints the token ids of the text, separated by spaces; with --pieces, one\n"
                 "token per line with its piece. MODEL is any GGUF file with a tokenizer.\n",
        .flags = flags,
        .n_flags = sizeof flags / sizeof *flags,
        .min_positional = 1,
        .max_positional = 2,
    };
    const char *positional[2];
    int n_positional;
    int parsed = cli_parse_command(&spec, argc, argv, positional, &n_positional, stdout, err);
    if (parsed != 0)
        return parsed < 0 ? -1 : 0;
    quill_model_params params = quill_model_params_default();
    params.vocab_only = true; /* the tokenizer is all it needs, and all some files hold */
    quill_model *m = quill_model_load(positional[0], &params);
    if (!m)
        return error_set(err, "%s", quill_last_error());
    char *text = NULL;
    size_t len;
    quill_token *ids = NULL;
    int status = tokenize_input(&o, n_positional > 1 ? positional[1] : NULL, &text, &len, err);
    int n_ids = status == 0 ? generate_tokenize(m, text, len, !o.no_bos, o.parse_special, &ids, err) : -1;
    if (n_ids >= 0)
        print_tokens(m, ids, n_ids, o.pieces);
    free(ids);
    free(text);
    quill_model_free(m);
    return n_ids >= 0 ? 0 : -1;
}

/* quill tokenize: the token ids of a text under a GGUF file's tokenizer (any GGUF with
 * tokenizer.ggml.* keys, vocab-only files included). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buffer.h"
#include "cli.h"
#include "fileio.h"
#include "generate.h"
#include "gguf.h"
#include "loader.h"
#include "tokenizer.h"

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

static void print_tokens(const Tokenizer *tok, const int *ids, size_t n, bool pieces)
{
    for (size_t i = 0; i < n; i++) {
        if (pieces)
            printf("%d '%s'\n", ids[i], tok->pieces[ids[i]]);
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
    GgufFile *f;
    Tokenizer tok;
    char path[4096];
    model_path_resolve(positional[0], path, sizeof path);
    if (gguf_open(&f, path, err) != 0)
        return -1;
    int status = tokenizer_from_gguf(&tok, f, err);
    gguf_close(f);
    if (status != 0)
        return error_prefix(err, "%s", path);
    char *text = NULL;
    size_t len;
    int *ids = NULL;
    size_t n_ids;
    status = tokenize_input(&o, n_positional > 1 ? positional[1] : NULL, &text, &len, err);
    if (status == 0)
        status = tokenizer_encode_with(
            &tok, text, len,
            (EncodeOptions){.add_bos = tok.add_bos && !o.no_bos, .parse_special = o.parse_special},
            &ids, &n_ids, err);
    if (status == 0)
        print_tokens(&tok, ids, n_ids, o.pieces);
    free(ids);
    free(text);
    tokenizer_free(&tok);
    return status;
}

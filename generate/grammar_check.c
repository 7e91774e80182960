/* quill grammar: builds a GBNF grammar (src/grammar.h) from a file or from --grammar, and
 * with --check prints "accept" or "reject" for each text after it, one line each: a way to
 * try a grammar without a model. Every argument after --check is a text, even one that
 * starts with '-', so the command line is cut there before the flags are parsed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "fileio.h"
#include "generate.h"
#include "grammar.h"

/* The index of the first "--check" in argv, or argc when there is none. */
static int find_check(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--check") == 0)
            return i;
    return argc;
}

/* Builds the grammar from the file or the inline text (exactly one); its errors start with
 * where the grammar came from. */
int grammar_load(const char *file, const char *inline_text, Grammar *g, Error *err)
{
    if ((file != NULL) == (inline_text != NULL))
        return error_set(err, "give the grammar one way: a FILE or --grammar 'root ::= ...'");
    if (inline_text) {
        if (grammar_parse(inline_text, strlen(inline_text), g, err) != 0)
            return error_prefix(err, "--grammar");
        return 0;
    }
    char *text;
    size_t len;
    if (file_read_all(file, &text, &len, err) != 0)
        return -1;
    int status = grammar_parse(text, len, g, err);
    free(text);
    return status == 0 ? 0 : error_prefix(err, "%s", file);
}

static int print_verdicts(const Grammar *g, char **texts, int n, Error *err)
{
    for (int i = 0; i < n; i++) {
        bool accepted;
        if (grammar_accepts(g, texts[i], strlen(texts[i]), &accepted, err) != 0)
            return -1;
        puts(accepted ? "accept" : "reject");
    }
    return 0;
}

int cmd_grammar(int argc, char **argv, Error *err)
{
    const char *inline_text = NULL;
    const Flag flags[] = {
        {"grammar", FLAG_STRING, &inline_text, 0, 0, "the grammar's text, instead of a FILE"},
    };
    const CommandSpec spec = {
        .usage = "usage: quill grammar (FILE | --grammar 'root ::= ...') [--check TEXT...]\n\n"
                 "Builds a GBNF grammar (llama.cpp's format; docs/grammars.md) and, with\n"
                 "--check, prints accept or reject for each TEXT, one line each, in order: accept\n"
                 "when the whole text matches the rule root. Without --check it prints \"ok\"\n"
                 "once the grammar builds. A grammar with an error exits 1 with its line and\n"
                 "column. Every argument after --check is a text, even one that starts with '-'.\n",
        .flags = flags,
        .n_flags = sizeof flags / sizeof *flags,
        .min_positional = 0,
        .max_positional = 1,
    };
    int check = find_check(argc, argv);
    const char *positional[1];
    int n_positional;
    /* the flags are what comes before --check (the usage describes --check itself) */
    int parsed = cli_parse_command(&spec, check, argv, positional, &n_positional, stdout, err);
    if (parsed != 0)
        return parsed < 0 ? -1 : 0;
    Grammar g;
    if (grammar_load(n_positional ? positional[0] : NULL, inline_text, &g, err) != 0)
        return -1;
    int status = 0;
    if (check < argc)
        status = print_verdicts(&g, argv + check + 1, argc - check - 1, err);
    else
        puts("ok");
    grammar_free(&g);
    return status;
}

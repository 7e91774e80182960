/* quill grammar: builds a GBNF grammar (src/grammar.h) from a file, from --grammar, or from
 * a JSON Schema (--json-schema, --json: src/json_schema.h), and with --check prints
 * "accept" or "reject" for each text after it, one line each: a way to try a grammar
 * without a model. Every argument after --check is a text, even one that starts with '-',
 * so the command line is cut there before the flags are parsed. The grammar's sources are
 * read here for quill generate too (grammar_source_load). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "fileio.h"
#include "generate.h"
#include "grammar.h"
#include "json_schema.h"

/* The index of the first "--check" in argv, or argc when there is none. */
static int find_check(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--check") == 0)
            return i;
    return argc;
}

/* The flag that names the source, for messages; NULL when none is given. */
const char *grammar_source_flag(const GrammarSource *s)
{
    return s->json        ? "--json"
           : s->json_schema ? "--json-schema"
           : s->text        ? "--grammar"
           : s->file        ? "--grammar-file"
                            : NULL;
}

/* Exactly one source at most: --grammar, --grammar-file (or quill grammar's FILE), --json
 * and --json-schema all say what the whole text is. */
static int grammar_source_check(const GrammarSource *s, Error *err)
{
    if ((s->file != NULL) + (s->text != NULL) + (s->json_schema != NULL) + s->json > 1)
        return error_set(err, "give one grammar: --grammar, --grammar-file (or a FILE), --json "
                              "or --json-schema, not two");
    return 0;
}

/* The schema's JSON text: the value of --json-schema itself when it starts (after spaces)
 * with '{' or is true or false, otherwise a file, named with or without a leading '@'.
 * *from names where it came from, for messages; *owned is what to free. */
static int read_schema(const char *value, const char **schema, const char **from, char **owned,
                       size_t *len, Error *err)
{
    const char *start = value + strspn(value, " \t\r\n");
    *owned = NULL;
    if (*start == '{' || strcmp(start, "true") == 0 || strcmp(start, "false") == 0) {
        *schema = value;
        *len = strlen(value);
        *from = "--json-schema";
        return 0;
    }
    *from = value[0] == '@' ? value + 1 : value;
    if (file_read_all(*from, owned, len, err) != 0)
        return error_prefix(err, "--json-schema");
    *schema = *owned;
    return 0;
}

int grammar_source_gbnf(const GrammarSource *s, char **gbnf, size_t *len, Error *err)
{
    if (grammar_source_check(s, err) != 0)
        return -1;
    if (s->json) {
        if (json_schema_to_gbnf(JSON_SCHEMA_ANY_VALUE, strlen(JSON_SCHEMA_ANY_VALUE), gbnf,
                                err) != 0)
            return error_prefix(err, "--json");
        *len = strlen(*gbnf);
        return 0;
    }
    if (s->json_schema) {
        const char *schema = NULL, *from = NULL;
        char *owned;
        size_t schema_len;
        if (read_schema(s->json_schema, &schema, &from, &owned, &schema_len, err) != 0)
            return -1;
        int status = json_schema_to_gbnf(schema, schema_len, gbnf, err);
        free(owned);
        if (status != 0)
            return error_prefix(err, "%s", from);
        *len = strlen(*gbnf);
        return 0;
    }
    if (s->text) {
        *gbnf = strdup(s->text);
        *len = strlen(s->text);
        return *gbnf ? 0 : error_set(err, "out of memory");
    }
    if (!s->file)
        return error_set(err, "give the grammar one way: a FILE, --grammar 'root ::= ...', "
                              "--json or --json-schema SCHEMA");
    return file_read_all(s->file, gbnf, len, err);
}

/* Builds the grammar; its errors start with where the grammar came from ("--grammar: line 1,
 * column 20: ...", "schema.json: #/properties/age: ..."). */
int grammar_source_load(const GrammarSource *s, Grammar *g, Error *err)
{
    char *gbnf;
    size_t len;
    if (grammar_source_gbnf(s, &gbnf, &len, err) != 0)
        return -1;
    int status = grammar_parse(gbnf, len, g, err);
    free(gbnf);
    return status == 0 ? 0 : error_prefix(err, "%s", s->file ? s->file : grammar_source_flag(s));
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

/* The grammar a schema becomes, on stdout. */
static int print_gbnf(const GrammarSource *source, Error *err)
{
    char *gbnf;
    size_t len;
    if (grammar_source_gbnf(source, &gbnf, &len, err) != 0)
        return -1;
    fwrite(gbnf, 1, len, stdout);
    free(gbnf);
    return 0;
}

int cmd_grammar(int argc, char **argv, Error *err)
{
    GrammarSource source = {0};
    bool print = false;
    const Flag flags[] = {
        {"grammar", FLAG_STRING, &source.text, 0, 0, "the grammar's text, instead of a FILE"},
        {"json", FLAG_SWITCH, &source.json, 0, 0, "the grammar of any JSON value"},
        {"json-schema", FLAG_STRING, &source.json_schema, 0, 0,
         "the grammar of a JSON Schema: a FILE (or @FILE), or the schema's text"},
        {"print", FLAG_SWITCH, &print, 0, 0,
         "print the GBNF grammar built from --json or --json-schema"},
    };
    const CommandSpec spec = {
        .usage = "usage: quill grammar (FILE | --grammar 'root ::= ...' | --json | --json-schema SCHEMA)\n"
                 "                     [--print] [--check TEXT...]\n\n"
                 "Builds a GBNF grammar (llama.cpp's format; docs/grammars.md), or one from a JSON\n"
                 "Schema, and with --check prints accept or reject for each TEXT, one line each, in\n"
                 "order: accept when the whole text matches the rule root. Without --check it\n"
                 "prints \"ok\" once the grammar builds; --print prints the grammar a schema\n"
                 "becomes. A grammar or schema with an error exits 1 naming where it is. Every\n"
                 "argument after --check is a text, even one that starts with '-'.\n",
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
    source.file = n_positional ? positional[0] : NULL;
    if (print && !source.json && !source.json_schema)
        return error_set(err, "--print shows the grammar built from --json or --json-schema");
    Grammar g;
    if (grammar_source_load(&source, &g, err) != 0)
        return -1;
    int status = 0;
    if (print)
        status = print_gbnf(&source, err);
    if (status == 0 && check < argc)
        status = print_verdicts(&g, argv + check + 1, argc - check - 1, err);
    else if (status == 0 && !print)
        puts("ok");
    grammar_free(&g);
    return status;
}

/* docs/cli.md against the binary: every command `quill --help` lists has a section
 * "## quill NAME", and every flag its --help prints is named in that section. A flag added
 * to the code and not to the reference fails here. */
#include <criterion/criterion.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fileio.h"
#include "test_util.h"

/* The section of cli.md that documents a command: from "## quill NAME" to the next "## ". */
static char *cli_md_section(const char *md, const char *command)
{
    char heading[64];
    snprintf(heading, sizeof heading, "\n## quill %s", command);
    const char *start = strstr(md, heading);
    if (!start || isalnum((unsigned char)start[strlen(heading)]))
        return NULL;
    const char *end = strstr(start + 1, "\n## ");
    return strndup(start, end ? (size_t)(end - start) : strlen(start));
}

/* True when text names --flag as a whole word (not as the start of a longer flag). */
static bool names_flag(const char *text, const char *flag)
{
    size_t n = strlen(flag);
    for (const char *p = strstr(text, flag); p; p = strstr(p + 1, flag)) {
        char next = p[n];
        if (!(isalnum((unsigned char)next) || next == '-'))
            return true;
    }
    return false;
}

/* Checks that every option line of `quill ARGS --help` ("  -x, --name ..." or
 * "  --name ...") has its --name in section, the cli.md section called `name`; returns
 * how many flags were compared. */
static int check_flags_documented(const char *args, const char *section, const char *name)
{
    char *help;
    int status = quill(&help, "%s --help", args);
    cr_assert_eq(status, 0, "quill %s --help failed:\n%s", args, help);
    int compared = 0;
    for (const char *line = help; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        if (strncmp(line, "  -", 3) != 0)
            continue;
        const char *dashes = strstr(line, "--");
        if (!dashes || dashes > strchr(line, '\n'))
            continue;
        char flag[64];
        size_t n = strspn(dashes + 2, "abcdefghijklmnopqrstuvwxyz0123456789-");
        snprintf(flag, sizeof flag, "--%.*s", (int)n, dashes + 2);
        cr_expect(names_flag(section, flag), "docs/cli.md, section \"quill %s\": %s (from quill %s "
                  "--help) is not documented", name, flag, args);
        compared++;
    }
    free(help);
    return compared;
}

/* quill chat is quill generate --interactive: its --help is generate's, documented there;
 * quill bench MODEL.gguf has flags of its own, in the bench section. */
typedef struct {
    const char *args;    /* what to run with --help: a command as `quill --help` lists it */
    const char *section; /* the cli.md section that documents it */
} HelpCase;

Test(docs, every_command_and_flag_is_in_cli_md)
{
    char *md, *list;
    size_t len;
    Error err;
    cr_assert_eq(file_read_all("docs/cli.md", &md, &len, &err), 0, "%s", err.msg);
    cr_assert_eq(quill(&list, "--help"), 0, "quill --help failed:\n%s", list);
    HelpCase cases[32];
    int n_cases = 0;
    const char *commands = strstr(list, "commands:\n");
    cr_assert_not_null(commands, "quill --help lists no commands:\n%s", list);
    for (const char *line = strchr(commands, '\n') + 1; *line == ' ' && n_cases < 31;
         line = strchr(line, '\n') + 1) {
        static char names[32][32];
        sscanf(line, " %31s", names[n_cases]);
        const char *name = names[n_cases];
        cases[n_cases++] = (HelpCase){name, strcmp(name, "chat") == 0 ? "generate" : name};
    }
    cases[n_cases++] = (HelpCase){"bench model.gguf", "bench"};
    cr_assert_geq(n_cases, 10, "quill --help lists only %d commands:\n%s", n_cases - 1, list);
    int flags = 0;
    for (int i = 0; i < n_cases; i++) {
        char *section = cli_md_section(md, cases[i].section);
        cr_expect_not_null(section, "docs/cli.md has no section \"## quill %s\"", cases[i].section);
        if (section)
            flags += check_flags_documented(cases[i].args, section, cases[i].section);
        free(section);
    }
    cr_expect_geq(flags, 100, "only %d flags compared", flags);
    free(list);
    free(md);
}

/* The playground's short explanation of each sampler stage (STAGE_HELP in playground.js,
 * `"stage": "sentence",` lines) is docs/sampling.md's "Each stage in one sentence", word
 * for word, so the page and the docs cannot drift apart. */
Test(docs, playground_stage_help_is_sampling_md)
{
    char *js, *md;
    size_t len;
    Error err;
    cr_assert_eq(file_read_all("generate/playground/playground.js", &js, &len, &err), 0, "%s",
                 err.msg);
    cr_assert_eq(file_read_all("docs/sampling.md", &md, &len, &err), 0, "%s", err.msg);
    const char *table = strstr(js, "const STAGE_HELP = {");
    cr_assert_not_null(table, "playground.js has no STAGE_HELP table");
    const char *end = strstr(table, "};");
    cr_assert_not_null(end);
    int compared = 0;
    for (const char *line = strchr(table, '\n') + 1; line < end; line = strchr(line, '\n') + 1) {
        char stage[32], sentence[512], expected[600];
        if (sscanf(line, " \"%31[^\"]\": \"%511[^\"]\"", stage, sentence) != 2)
            continue;
        snprintf(expected, sizeof expected, "- `%s`: %s\n", stage, sentence);
        cr_expect_not_null(strstr(md, expected), "docs/sampling.md lacks the line: %s", expected);
        compared++;
    }
    cr_expect_eq(compared, 13, "%d stages compared: the 11 stages, mirostat and the final chain",
                 compared);
    free(js);
    free(md);
}

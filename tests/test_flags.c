/* The command-line parser (src/cli.c) on generate's own flag table: every spelling a user
 * coming from other tools types, and ranges whose message agrees with what is accepted. */
#include <criterion/criterion.h>
#include <string.h>

#include "../generate/options.h"
#include "cli.h"

/* Parses argv (argv[0] "generate", then a MODEL) into o; returns the parser's status. */
static int parse(GenerateOptions *o, int argc, char **argv, Error *err)
{
    const char *model = NULL;
    generate_options_default(o);
    return generate_parse_options(argc, argv, o, &model, err);
}

/* A short flag takes its value after '=' as a long one does: -n=5 is --max-tokens=5. */
Test(flags, short_flags_take_a_value_after_an_equals_sign)
{
    const struct {
        char *arg;
        int max_tokens, seed;
    } cases[] = {{"-n=5", 5, -1}, {"-s=7", 256, 7}, {"--max-tokens=9", 9, -1}};
    int compared = 0;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        GenerateOptions o;
        Error err;
        char *argv[] = {"generate", "m.gguf", cases[i].arg};
        cr_assert_eq(parse(&o, 3, argv, &err), 0, "%s: %s", cases[i].arg, err.msg);
        cr_expect_eq(o.max_tokens, cases[i].max_tokens, "%s", cases[i].arg);
        cr_expect_eq(o.seed, cases[i].seed, "%s", cases[i].arg);
        generate_options_free(&o);
        compared++;
    }
    cr_assert_eq(compared, 3);
    GenerateOptions o;
    Error err;
    char *bad[] = {"generate", "m.gguf", "-n=many"};
    cr_expect_eq(parse(&o, 3, bad, &err), -1);
    cr_expect_not_null(strstr(err.msg, "-n expects an integer, got 'many'"), "%s", err.msg);
    generate_options_free(&o);
}

/* A list flag takes the values that follow it up to the next flag, a short one included:
 * --stop a b -n 5 is two stop strings and 5 tokens (-n and 5 were taken as stop strings). */
Test(flags, a_list_ends_at_a_short_flag)
{
    GenerateOptions o;
    Error err;
    char *argv[] = {"generate", "m.gguf", "--stop", "a", "b", "-n", "5", "--stop", "c", "-s=2"};
    cr_assert_eq(parse(&o, 10, argv, &err), 0, "%s", err.msg);
    cr_assert_eq(o.stop.n, 3);
    cr_expect_str_eq(o.stop.items[0], "a");
    cr_expect_str_eq(o.stop.items[1], "b");
    cr_expect_str_eq(o.stop.items[2], "c");
    cr_expect_eq(o.max_tokens, 5);
    cr_expect_eq(o.seed, 2);
    generate_options_free(&o);
}

/* A switch given a value reads on/off, yes/no, true/false and 1/0, in any case, on the
 * command line (--echo=off) and through cli_flag_set (the REPL's /set echo=off). */
Test(flags, switches_read_on_off_yes_no_true_false_1_0)
{
    const struct {
        const char *value;
        bool on;
    } cases[] = {{"on", true},    {"off", false}, {"yes", true}, {"no", false},
                 {"true", true},  {"false", false}, {"1", true}, {"0", false},
                 {"ON", true},    {"No", false}};
    int compared = 0;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        GenerateOptions o;
        Error err;
        char arg[32];
        snprintf(arg, sizeof arg, "--verbose=%s", cases[i].value);
        char *argv[] = {"generate", "m.gguf", arg};
        cr_assert_eq(parse(&o, 3, argv, &err), 0, "%s: %s", arg, err.msg);
        cr_expect_eq(o.verbose, cases[i].on, "%s", arg);
        Flag flags[GENERATE_MAX_FLAGS];
        int n = generate_options_flags(&o, flags);
        const Flag *echo = cli_flag_find(flags, n, "echo", 4);
        o.echo = !cases[i].on;
        cr_assert_eq(cli_flag_set(echo, cases[i].value, "/set echo", &err), 0, "%s", err.msg);
        cr_expect_eq(o.echo, cases[i].on, "/set echo=%s", cases[i].value);
        generate_options_free(&o);
        compared++;
    }
    cr_assert_eq(compared, 10);
    GenerateOptions o;
    Error err;
    char *bad[] = {"generate", "m.gguf", "--verbose=maybe"};
    cr_expect_eq(parse(&o, 3, bad, &err), -1);
    cr_expect_not_null(strstr(err.msg, "--verbose expects on or off (yes/no, true/false, 1/0), "
                                       "got 'maybe'"),
                       "%s", err.msg);
    char *negated[] = {"generate", "m.gguf", "--no-verbose=yes"};
    cr_expect_eq(parse(&o, 3, negated, &err), -1);
    cr_expect_not_null(strstr(err.msg, "--no-verbose takes no value"), "%s", err.msg);
    generate_options_free(&o);
}

/* --repeat-penalty divides logits, so 0 is refused where it is parsed, by a message whose
 * range leaves 0 out; the smallest positive values and 1 (off) pass. */
Test(flags, repeat_penalty_range_and_message_agree)
{
    GenerateOptions o;
    Error err;
    char *zero[] = {"generate", "m.gguf", "--repeat-penalty", "0"};
    cr_expect_eq(parse(&o, 4, zero, &err), -1);
    cr_expect_not_null(strstr(err.msg, "--repeat-penalty 0 is out of range (0, 100]"), "%s",
                       err.msg);
    generate_options_free(&o);
    const char *accepted[] = {"0.001", "1", "100"};
    for (int i = 0; i < 3; i++) {
        char *argv[] = {"generate", "m.gguf", "--repeat-penalty", (char *)accepted[i]};
        cr_expect_eq(parse(&o, 4, argv, &err), 0, "%s: %s", accepted[i], err.msg);
        generate_options_free(&o);
    }
}

/* quill generate and quill chat end to end, on what a user sees: seeds, the JSON lines of
 * --output-file read by Python's json module, the context's limits, beam search's output,
 * the flags chat cannot honour, and the REPL on a real terminal (a pseudo-terminal). */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"

/* Each "[seed N;" line of --verbose in text, in order, into seeds; returns how many. */
static int verbose_seeds(const char *text, long long *seeds, int cap)
{
    int n = 0;
    for (const char *p = strstr(text, "[seed "); p && n < cap; p = strstr(p + 1, "[seed "))
        seeds[n++] = strtoll(p + 6, NULL, 10);
    return n;
}

/* Two runs started together without --seed draw their seeds from the operating system, so
 * they differ (from the clock's seconds they were the same); each is a valid --seed value,
 * and giving it back reproduces the text. */
Test(generate_cli, runs_started_together_get_different_seeds, .timeout = 60)
{
    SHARED_FILE_OR_SKIP(model, "models/stories260K.gguf");
    char command[4096], *out;
    const char *run = "generate %s --prompt 'Once upon a time' -n 20 --verbose --no-echo";
    char one[1024];
    snprintf(one, sizeof one, run, model);
    snprintf(command, sizeof command, "{ %s %s & %s %s & wait; }", test_quill_bin(), one,
             test_quill_bin(), one);
    cr_assert_eq(test_run_capture(command, &out), 0, "%s", out);
    long long seeds[2];
    cr_assert_eq(verbose_seeds(out, seeds, 2), 2, "%s", out);
    cr_expect_neq(seeds[0], seeds[1], "both runs used seed %lld", seeds[0]);
    free(out);
    char *text, *messages, *again, *messages_again;
    int status;
    quill_stdout(&text, &messages, &status, "%s", one);
    cr_assert_eq(status, 0, "%s", messages);
    cr_assert_eq(verbose_seeds(messages, seeds, 1), 1, "%s", messages);
    cr_expect(seeds[0] >= 0 && seeds[0] <= INT32_MAX, "seed %lld is not a --seed value",
              seeds[0]);
    quill_stdout(&again, &messages_again, &status, "%s --seed %lld", one, seeds[0]);
    cr_assert_eq(status, 0, "%s", messages_again);
    cr_expect_str_eq(again, text, "--seed %lld did not reproduce the text", seeds[0]);
    free(text);
    free(messages);
    free(again);
    free(messages_again);
}

/* quill generate --grammar: the grammar stage of the sampler (src/sampler.h,
 * sampler_set_grammar), checked through the real binary. Each output is judged by
 * `quill grammar --check`, the recognizer read whole, not by the stage that produced it. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"

/* A few words of a children's story, one to four of them, then a full stop: small enough
 * that stories260K's vocabulary holds every piece, and loose enough that seeds differ. */
#define WORDS_GRAMMAR                                                                      \
    "root ::= word (\" \" word){0,3} \".\"\n"                                              \
    "word ::= \"cat\" | \"dog\" | \"sun\" | \"tree\" | \"happy\" | \"big\""

/* Reads a whole small file into a malloc'd string. */
static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    char *text = calloc(1, 1 << 16);
    cr_assert_not_null(text);
    size_t n = fread(text, 1, (1 << 16) - 1, f);
    text[n] = '\0';
    fclose(f);
    return text;
}

/* 50 seeds: every text is accepted by `quill grammar --check`, and each run ends at the
 * end-of-text token ("eos" in --output-file's finish_reason), the way a grammar stage ends
 * generation once the grammar can take nothing more. */
Test(grammar_generate, every_seed_gives_a_text_the_grammar_accepts, .timeout = 300)
{
    SHARED_FILE_OR_SKIP(model, "models/stories260K.gguf");
    const char *dir = test_make_tmpdir();
    char jsonl[512];
    snprintf(jsonl, sizeof jsonl, "%s/out.jsonl", dir);
    int compared = 0, distinct_texts = 0;
    char first[256] = "";
    for (int seed = 1; seed <= 50; seed++) {
        char *text, *messages;
        int status;
        quill_stdout(&text, &messages, &status,
                     "generate %s --prompt 'Once upon a time' --no-echo --seed %d -n 64 "
                     "--grammar '%s' --output-file %s",
                     model, seed, WORDS_GRAMMAR, jsonl);
        cr_assert_eq(status, 0, "seed %d: %s", seed, messages);
        char *verdict;
        int check = quill(&verdict, "grammar --grammar '%s' --check '%s'", WORDS_GRAMMAR, text);
        cr_assert_eq(check, 0, "%s", verdict);
        cr_expect_str_eq(verdict, "accept\n", "seed %d: '%s' is not accepted", seed, text);
        char *record = read_text(jsonl);
        cr_expect_not_null(strstr(record, "\"finish_reason\":\"eos\""), "seed %d: %s", seed,
                           record);
        if (seed == 1)
            snprintf(first, sizeof first, "%s", text);
        else if (strcmp(first, text) != 0)
            distinct_texts++;
        compared++;
        free(record);
        free(verdict);
        free(text);
        free(messages);
    }
    cr_assert_eq(compared, 50);
    cr_expect_gt(distinct_texts, 0, "50 seeds gave the one text '%s'", first);
}

/* A grammar that does not parse is one error with its line and column, exit status 1,
 * and nothing generated; so is a --grammar-file that does not parse, named by its path. */
Test(grammar_generate, a_grammar_that_does_not_parse_is_a_clean_error, .timeout = 60)
{
    SHARED_FILE_OR_SKIP(model, "models/stories260K.gguf");
    char *text, *messages;
    int status;
    quill_stdout(&text, &messages, &status,
                 "generate %s --prompt 'Once' --no-echo --grammar 'root ::= (\"a\" | \"b\"'",
                 model);
    cr_expect_eq(status, 1, "%s", messages);
    cr_expect_str_eq(text, "");
    cr_expect_str_eq(messages, "quill: error: --grammar: line 1, column 20: expecting ')'\n");
    free(text);
    free(messages);

    const char *path = test_write_file(test_make_tmpdir(), "bad.gbnf",
                                       "root ::= \"a\"\nrest ::= [a-\n");
    quill_stdout(&text, &messages, &status, "generate %s --prompt 'Once' --grammar-file %s",
                 model, path);
    cr_expect_eq(status, 1, "%s", messages);
    cr_expect_not_null(strstr(messages, path), "%s", messages);
    cr_expect_not_null(strstr(messages, "line 2, column"), "%s", messages);
    free(text);
    free(messages);
}

/* Several samples or beams clone the sampler, which a grammar cannot be yet, and chat turns
 * would share one text's grammar state: refused, before the model loads. */
Test(grammar_generate, a_grammar_with_several_samples_is_refused, .timeout = 60)
{
    SHARED_FILE_OR_SKIP(model, "models/stories260K.gguf");
    char *out;
    int status = quill(&out, "generate %s --prompt 'Once' --num-samples 2 --grammar "
                             "'root ::= \"no.\"'",
                       model);
    cr_expect_eq(status, 1, "%s", out);
    cr_expect_not_null(strstr(out, "--grammar works with one sample"), "%s", out);
    free(out);
    status = quill(&out, "chat %s --grammar 'root ::= \"no.\"' < /dev/null", model);
    cr_expect_eq(status, 1, "%s", out);
    cr_expect_not_null(strstr(out, "--grammar works with one sample"), "%s", out);
    free(out);
}

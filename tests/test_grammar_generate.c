/* quill generate --grammar: the grammar stage of the sampler (src/sampler.h,
 * sampler_set_grammar), checked through the real binary. Each output is judged by
 * `quill grammar --check`, the recognizer read whole, not by the stage that produced it. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

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

/* A small JSON object whose every path ends within a few dozen tokens even where the
 * vocabulary has only single characters for it: a record a script would ask for. */
#define RECORD_GRAMMAR                                                                     \
    "root ::= \"{\\\"name\\\": \\\"\" name \"\\\", \\\"age\\\": \" age \"}\"\n"      \
    "name ::= [A-Z] [a-z]{1,6}\n"                                                           \
    "age  ::= [1-9] [0-9]?"

/* 50 seeds of `model` with `grammar` (inside single quotes on the command line): every text
 * is accepted by `quill grammar --check` (one call for all 50: one verdict per text, in
 * order), and each run ends at the end-of-text token ("eos" in --output-file's
 * finish_reason), the way a grammar stage ends generation once the grammar can take nothing
 * more; the seeds do not all give the same text. */
static void every_seed_is_accepted(const char *model, const char *grammar, int max_tokens)
{
    enum { SEEDS = 50, TEXT_MAX = 256 };
    const char *dir = test_make_tmpdir();
    char jsonl[512];
    snprintf(jsonl, sizeof jsonl, "%s/out.jsonl", dir);
    static char texts[SEEDS][TEXT_MAX];
    static char quoted[SEEDS * (TEXT_MAX + 3) + 1];
    size_t used = 0;
    int distinct_texts = 0;
    for (int seed = 1; seed <= SEEDS; seed++) {
        char *text, *messages;
        int status;
        quill_stdout(&text, &messages, &status,
                     "generate %s --prompt 'Once upon a time' --no-echo --seed %d -n %d "
                     "--grammar '%s' --output-file %s",
                     model, seed, max_tokens, grammar, jsonl);
        cr_assert_eq(status, 0, "seed %d: %s", seed, messages);
        cr_assert_lt(strlen(text), TEXT_MAX, "seed %d: a text longer than the grammar allows",
                     seed);
        cr_assert_null(strchr(text, '\''), "seed %d: a quote the grammar does not allow", seed);
        snprintf(texts[seed - 1], TEXT_MAX, "%s", text);
        used += (size_t)snprintf(quoted + used, sizeof quoted - used, " '%s'", text);
        char *record = read_text(jsonl);
        cr_expect_not_null(strstr(record, "\"finish_reason\":\"eos\""), "seed %d: %s", seed,
                           record);
        distinct_texts += seed > 1 && strcmp(texts[0], text) != 0;
        free(record);
        free(text);
        free(messages);
    }
    char *verdicts;
    int check = quill(&verdicts, "grammar --grammar '%s' --check%s", grammar, quoted);
    cr_assert_eq(check, 0, "%s", verdicts);
    int compared = 0;
    for (char *line = verdicts; *line && compared < SEEDS; compared++) {
        cr_expect_eq(strncmp(line, "accept\n", 7), 0, "seed %d: '%s' is not accepted",
                     compared + 1, texts[compared]);
        line = strchr(line, '\n') ? strchr(line, '\n') + 1 : line + strlen(line);
    }
    cr_assert_eq(compared, SEEDS, "%d verdicts for %d texts", compared, SEEDS);
    cr_expect_gt(distinct_texts, 0, "50 seeds gave the one text '%s'", texts[0]);
    free(verdicts);
}

Test(grammar_generate, every_seed_gives_a_text_the_grammar_accepts, .timeout = 300)
{
    SHARED_FILE_OR_SKIP(model, "models/stories260K.gguf");
    every_seed_is_accepted(model, WORDS_GRAMMAR, 64);
}

/* The same on a quantized model (Q4_K_M: 4-bit K-quants mixed with 6-bit ones) with random
 * weights, so that nothing but the grammar shapes the text, and a JSON record grammar. */
Test(grammar_generate, every_seed_of_a_quantized_model_gives_a_text_the_grammar_accepts,
     .timeout = 300)
{
    SHARED_FILE_OR_SKIP(model, "models/qtest-Q4_K_M.gguf");
    every_seed_is_accepted(model, RECORD_GRAMMAR, 40);
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

/* The texts of an --output-file, one JSON line per sample or beam: each accepted by `quill
 * grammar --check` and finished as eos; returns how many, and the first's text in first. */
static int check_jsonl_texts(const char *path, char *first, size_t cap)
{
    char *records = read_text(path), *save = NULL;
    int n = 0;
    for (char *line = strtok_r(records, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        cJSON *r = cJSON_Parse(line);
        const char *text = cJSON_GetStringValue(cJSON_GetObjectItem(r, "text"));
        cr_assert_not_null(text, "%s", line);
        char *verdict;
        cr_assert_eq(quill(&verdict, "grammar --grammar '%s' --check '%s'", WORDS_GRAMMAR, text), 0);
        cr_expect_str_eq(verdict, "accept\n", "'%s'", text);
        cr_expect_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(r, "finish_reason")), "eos");
        if (n++ == 0)
            snprintf(first, cap, "%s", text);
        free(verdict);
        cJSON_Delete(r);
    }
    free(records);
    return n;
}

/* Each sample and each beam has its grammar state (a clone's, sharing the vocabulary's
 * trie): every text of --num-samples and --beam-size is accepted, sample 1 is the one-sample
 * run's text for its seed; each line of an interactive session is followed by a text the
 * grammar accepts on its own (a prompt starts the grammar again). --must-include, whose
 * beams take words' tokens, is refused beside a grammar. */
Test(grammar_generate, samples_beams_and_turns_each_follow_the_grammar, .timeout = 120)
{
    SHARED_FILE_OR_SKIP(model, "models/stories260K.gguf");
    const char *dir = test_make_tmpdir();
    char jsonl[512], first[256], *alone, *messages;
    int status;
    snprintf(jsonl, sizeof jsonl, "%s/out.jsonl", dir);
    quill_stdout(&alone, &messages, &status, "generate %s --prompt 'Once upon a time' --no-echo "
                 "--seed 4 -n 64 --grammar '%s'", model, WORDS_GRAMMAR);
    cr_assert_eq(status, 0, "%s", messages);
    free(messages);
    char *out;
    cr_assert_eq(quill(&out, "generate %s --prompt 'Once upon a time' --no-echo --seed 4 -n 64 "
                       "--num-samples 4 --grammar '%s' --output-file %s", model, WORDS_GRAMMAR,
                       jsonl), 0, "%s", out);
    free(out);
    cr_expect_eq(check_jsonl_texts(jsonl, first, sizeof first), 4);
    cr_expect_str_eq(first, alone, "sample 1 (seed 4) is the one-sample run's text");
    cr_assert_eq(quill(&out, "generate %s --prompt 'Once upon a time' --no-echo -n 64 "
                       "--beam-size 4 --num-samples 3 --grammar '%s' --output-file %s", model,
                       WORDS_GRAMMAR, jsonl), 0, "%s", out);
    free(out);
    cr_expect_eq(check_jsonl_texts(jsonl, first, sizeof first), 3);

    char *turns;
    quill_stdout(&turns, &messages, &status, "generate %s --interactive --seed 2 -n 40 "
                 "--grammar '%s' < %s", model, WORDS_GRAMMAR,
                 test_write_file(dir, "lines.txt", "Once upon a time\nThe end. Then\n"));
    cr_assert_eq(status, 0, "%s", messages);
    int compared = 0;
    char *save = NULL;
    for (char *line = strtok_r(turns, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *verdict;
        cr_assert_eq(quill(&verdict, "grammar --grammar '%s' --check '%s'", WORDS_GRAMMAR, line), 0);
        cr_expect_str_eq(verdict, "accept\n", "turn %d: '%s'", compared + 1, line);
        compared++;
        free(verdict);
    }
    cr_expect_eq(compared, 2, "two turns, two texts: %d", compared);
    free(turns);
    free(messages);
    free(alone);

    status = quill(&out, "generate %s --prompt 'Once' --must-include cat --grammar "
                         "'root ::= \"no.\"'", model);
    cr_expect_eq(status, 1, "%s", out);
    cr_expect_not_null(strstr(out, "--grammar and --must-include: one or the other"), "%s", out);
    free(out);
}

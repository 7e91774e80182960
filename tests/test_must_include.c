/* Words that must appear (quill generate --must-include, quill_beam_params.must_include):
 * lexically constrained beam search on stories260K. The texts are checked by searching
 * the output for each word (strstr), outside the search's own bookkeeping; the exit status
 * and the stderr line are the binary's.
 *
 * Beam search draws no random numbers (the seed plays no part: a search from one prompt
 * always finds the same text), so the twenty runs vary the prompt: twenty story openings. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "quill.h"
#include "test_util.h"

#define STORIES "models/stories260K.gguf"

static const char *const WORDS[] = {"dragon", "castle", "knight"};
enum { N_WORDS = 3, EXIT_MISSED_WORDS = 3 };

static const char *const PROMPTS[] = {
    "Once upon a time",
    "One day, a little girl named Lily",
    "Tom and his mom went to the park",
    "There was a big red ball",
    "The sun was shining and",
    "A little bird sat on a tree",
    "Sam had a new toy",
    "In a small house lived a cat",
    "The boy wanted to play",
    "Mia found a shiny stone",
    "Ben and Sue were friends",
    "It was a rainy day",
    "The old man had a garden",
    "Lucy liked to draw",
    "A fish swam in the pond",
    "The dog ran very fast",
    "Tim saw a big truck",
    "Anna went to school",
    "The princess looked out of the window",
    "Max was hungry",
};
enum { N_PROMPTS = sizeof PROMPTS / sizeof *PROMPTS };

/* `quill generate MODEL --no-echo --prompt PROMPT ARGS`: stdout returned, stderr into
 * *messages, the exit status into *status. */
static char *generate(const char *path, const char *prompt, const char *args, char **messages,
                      int *status)
{
    char *out;
    quill_stdout(&out, messages, status, "generate %s --no-echo --prompt '%s' %s", path, prompt,
                 args);
    return out;
}

/* Every prompt's output holds all three words, and the search says it found them (exit
 * status 0, nothing on stderr). */
Test(must_include, twenty_prompts_each_hold_all_three_words, .timeout = 120)
{
    SHARED_FILE_OR_SKIP(path, STORIES);
    int compared = 0;
    for (int i = 0; i < N_PROMPTS; i++) {
        char *messages;
        int status;
        char *out = generate(path, PROMPTS[i], "-n 60 --must-include dragon,castle,knight",
                             &messages, &status);
        cr_expect_eq(status, 0, "prompt \"%s\": status %d: %s", PROMPTS[i], status, messages);
        cr_expect_str_eq(messages, "", "prompt \"%s\"", PROMPTS[i]);
        for (int w = 0; w < N_WORDS; w++)
            cr_expect_not_null(strstr(out, WORDS[w]), "prompt \"%s\": no \"%s\" in \"%s\"",
                               PROMPTS[i], WORDS[w], out);
        compared++;
        free(out);
        free(messages);
    }
    cr_expect_eq(compared, 20);
}

/* A phrase of many tokens cannot fit in 5: the best text is still written, stderr names the
 * phrase it lacks (and not the word it holds), and the exit status is 3. */
Test(must_include, a_phrase_that_cannot_fit_is_named_with_exit_status_3, .timeout = 60)
{
    SHARED_FILE_OR_SKIP(path, STORIES);
    char *messages;
    int status;
    char *out = generate(path, PROMPTS[0], "-n 5 --must-include 'dragon,the old wizard of the "
                         "northern mountains'", &messages, &status);
    cr_expect_eq(status, EXIT_MISSED_WORDS, "status %d: %s", status, messages);
    cr_expect_str_eq(messages, "quill: the output lacks \"the old wizard of the northern "
                               "mountains\" of --must-include within 5 tokens\n");
    cr_expect_not_null(strstr(out, "dragon"), "%s", out);
    free(out);
    free(messages);
}

/* A list with no words in it leaves the search as it was: the output of plain beam search,
 * byte for byte. */
Test(must_include, no_words_is_plain_beam_search, .timeout = 60)
{
    SHARED_FILE_OR_SKIP(path, STORIES);
    char *messages[2];
    int status[2];
    char *plain = generate(path, PROMPTS[0], "-n 30 --beam-size 4", &messages[0], &status[0]);
    char *empty = generate(path, PROMPTS[0], "-n 30 --beam-size 4 --must-include ','",
                           &messages[1], &status[1]);
    for (int i = 0; i < 2; i++) {
        cr_expect_eq(status[i], 0, "%s", messages[i]);
        free(messages[i]);
    }
    cr_expect_str_eq(empty, plain);
    free(plain);
    free(empty);
}

/* Through the API: with no words (an empty list) the results equal plain beam search's,
 * score for score; with the three words the best text holds them (missed 0), and each
 * text's missed names the words it lacks (a second text may run out of tokens first: the
 * beams are shared among the banks); with 5 tokens for a long phrase, missed has the
 * phrase's bit alone. */
Test(must_include, the_api_searches_with_words_and_reports_what_it_missed, .timeout = 60)
{
    SHARED_FILE_OR_SKIP(path, STORIES);
    quill_model *m = quill_model_load(path, NULL);
    cr_assert_not_null(m, "%s", quill_last_error());
    quill_context_params cp = quill_context_params_default();
    cp.n_seq = 4;
    cp.n_ctx = 96;
    quill_context *c = quill_context_new(m, &cp);
    cr_assert_not_null(c, "%s", quill_last_error());
    quill_sampler *s = quill_sampler_new(m, NULL);
    quill_beam_params p = quill_beam_params_default();
    p.max_tokens = 60;
    p.n_best = 2;
    quill_beam_result plain[2], none[2], best[2];
    int n_plain = quill_beam_search(c, s, PROMPTS[0], &p, plain, 2);
    p.must_include = WORDS;
    int n_none = quill_beam_search(c, s, PROMPTS[0], &p, none, 2);
    cr_assert_eq(n_plain, 2, "%s", quill_last_error());
    cr_assert_eq(n_none, 2, "%s", quill_last_error());
    for (int i = 0; i < 2; i++) {
        cr_expect_str_eq(none[i].text, plain[i].text);
        cr_expect_eq(none[i].score, plain[i].score);
        cr_expect_eq(none[i].missed, 0);
    }
    p.n_must_include = N_WORDS;
    int n = quill_beam_search(c, s, PROMPTS[0], &p, best, 2);
    cr_assert_eq(n, 2, "%s", quill_last_error());
    cr_expect_eq(best[0].missed, 0, "missed %#llx", (unsigned long long)best[0].missed);
    for (int i = 0; i < n; i++) { /* missed is what the text lacks */
        uint64_t lacks = 0;
        for (int w = 0; w < N_WORDS; w++)
            lacks |= strstr(best[i].text, WORDS[w]) ? 0 : UINT64_C(1) << w;
        cr_expect_eq(best[i].missed, lacks, "text %d: missed %#llx: %s", i,
                     (unsigned long long)best[i].missed, best[i].text);
    }
    quill_beam_results_free(best, n);
    const char *const too_long[] = {"dragon", "the old wizard of the northern mountains"};
    p.must_include = too_long;
    p.n_must_include = 2;
    p.max_tokens = 5;
    p.n_best = 1;
    n = quill_beam_search(c, s, PROMPTS[0], &p, best, 1);
    cr_assert_eq(n, 1, "%s", quill_last_error());
    cr_expect_eq(best[0].missed, 2, "missed %#llx: %s", (unsigned long long)best[0].missed,
                 best[0].text);
    cr_expect_not_null(strstr(best[0].text, "dragon"), "%s", best[0].text);
    quill_beam_results_free(best, n);
    p.n_must_include = -1;
    cr_expect_eq(quill_beam_search(c, s, PROMPTS[0], &p, best, 1), QUILL_ERROR);
    cr_expect_eq(quill_last_error_kind(), QUILL_ERROR_PARAMETER, "%s", quill_last_error());
    quill_beam_results_free(plain, n_plain);
    quill_beam_results_free(none, n_none);
    quill_sampler_free(s);
    quill_context_free(c);
    quill_model_free(m);
}

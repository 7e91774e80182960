/* The notebooks (notebooks-c/), run as a reader runs them: each one's key printed facts are
 * checked against values worked out by hand or taken from llama.cpp's reference files, so
 * a notebook that stops teaching the truth fails here. The binaries are the ones `make`
 * builds next to the library under test ($QUILL_NOTEBOOKS, set by `make test`). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fileio.h"
#include "test_util.h"

static const char *notebook_dir(void)
{
    const char *dir = getenv("QUILL_NOTEBOOKS");
    return dir && *dir ? dir : "build/release/notebooks";
}

/* Runs a notebook with its arguments (one thread: the notebooks' models are small, and
 * tests run side by side); it must exit 0. Returns its output (malloc'd). */
static char *run_notebook(const char *name, const char *args)
{
    char command[1024], *out;
    snprintf(command, sizeof command, "OMP_NUM_THREADS=1 %s/%s %s", notebook_dir(), name, args);
    int status = test_run_capture(command, &out);
    cr_assert_eq(status, 0, "%s exited with %d:\n%s", command, status, out);
    return out;
}

static void expect_text(const char *out, const char *text)
{
    cr_expect_not_null(strstr(out, text), "missing \"%s\" in:\n%s", text, out);
}

/* The number printed right after `label` (after `from`, when not NULL). */
static double number_after(const char *out, const char *from, const char *label)
{
    const char *start = from ? strstr(out, from) : out;
    cr_assert_not_null(start, "missing \"%s\" in:\n%s", from, out);
    const char *at = strstr(start, label);
    cr_assert_not_null(at, "missing \"%s\" in:\n%s", label, out);
    char *end;
    double value = strtod(at + strlen(label), &end);
    cr_assert(end != at + strlen(label), "no number after \"%s\"", label);
    return value;
}

/* The line after `from` that starts with `prefix` (the rest of it, in a static buffer). */
static const char *line_after(const char *out, const char *from, const char *prefix)
{
    static char line[512];
    const char *start = strstr(out, from);
    cr_assert_not_null(start, "missing \"%s\" in:\n%s", from, out);
    for (const char *p = strchr(start, '\n'); p; p = strchr(p + 1, '\n'))
        if (strncmp(p + 1, prefix, strlen(prefix)) == 0) {
            size_t n = strcspn(p + 1 + strlen(prefix), "\n");
            snprintf(line, sizeof line, "%.*s", (int)n, p + 1 + strlen(prefix));
            return line;
        }
    cr_assert_fail("no line \"%s...\" after \"%s\" in:\n%s", prefix, from, out);
    return NULL;
}

Test(notebooks, tokenization_round_trips_and_falls_back_to_bytes)
{
    char *out = run_notebook("01_tokenization", "");
    expect_text(out, "decode(encode(paragraph)) == paragraph: yes");
    /* "é" is U+00E9, in UTF-8 the two bytes C3 A9 */
    expect_text(out, "\"café\" -> 6 tokens: [▁] [c] [a] [f] [<0xC3>] [<0xA9>]");
    expect_text(out, "decoded again: \"café\"");
    /* every merge joins a pair that occurs at least twice: the paragraph shrinks each time */
    int compared = 0, last = (int)number_after(out, NULL, "the paragraph is ");
    for (const char *p = strstr(out, "is now"); p; p = strstr(p + 1, "is now")) {
        int n = atoi(p + strlen("is now"));
        cr_expect_lt(n, last, "a merge went from %d to %d tokens", last, n);
        last = n;
        compared++;
    }
    cr_expect_eq(compared, 12, "%d merges compared, want 12", compared);
    free(out);
}

Test(notebooks, attention_by_hand_equals_the_library)
{
    char *out = run_notebook("02_attention", "");
    cr_expect_lt(number_after(out, NULL, "max |A by hand - A of the library|     = "), 1e-6);
    cr_expect_lt(number_after(out, NULL, "max |out by hand - out of the library| = "), 1e-6);
    /* the causal mask: the first token can only attend to itself */
    cr_expect_str_eq(line_after(out, "A = softmax(S)", "  t=0 "), "  1.000  0.000  0.000  0.000");
    free(out);
}

Test(notebooks, backprop_by_hand_by_code_and_by_finite_differences_agree)
{
    char *out = run_notebook("03_backprop", "");
    cr_expect_lt(number_after(out, NULL, "by the code| over dx:"), 1e-5);
    cr_expect_lt(number_after(out, NULL, "by the code| over dw:"), 1e-5);
    cr_expect_lt(number_after(out, NULL, "(eps=1e-2) - by the code|:"), 1e-3);
    free(out);
}

/* The first loss is ln V exactly (the output layer starts at 0); the schedule starts at
 * lr / (warmup + 1) = 0.01 / 11 and peaks at 0.01 after the warmup's 10 steps. */
Test(notebooks, training_loop_learns_under_the_schedule)
{
    char *out = run_notebook("04_training_loop", "");
    double first = number_after(out, NULL, "loss: first ");
    double ln_v = number_after(out, "loss: first ", "(ln V = ");
    double last = number_after(out, "loss: first ", "last ");
    cr_expect(fabs(first - ln_v) < 1e-3, "first loss %g, ln V %g", first, ln_v);
    cr_expect_lt(last, first - 2.0, "the loss went from %g only to %g", first, last);
    cr_expect_not_null(strstr(line_after(out, "step   loss", "   0 "), "9.09e-04 |"));
    cr_expect_not_null(strstr(line_after(out, "step   loss", "  10 "), "1.00e-02 |"));
    free(out);
}

/* The logits 3, 2.5, 1.8, 1.2, 0.5, 0, -0.8, -2 have softmax 0.448, 0.271, 0.135, 0.074,
 * 0.037, 0.022, 0.010, 0.003 and entropy 1.4464 nats (worked out with a calculator). */
Test(notebooks, sampling_keeps_the_hand_computed_sets)
{
    char *out = run_notebook("05_sampling", "");
    cr_expect(fabs(number_after(out, "1. the model's distribution", "entropy ") - 1.4464) < 1e-3);
    /* top-k 3: the three highest */
    cr_expect_str_eq(line_after(out, "3. top-k 3", "  kept:"), " the a cat");
    /* top-p 0.8: 0.448, + 0.271 = 0.719, + 0.135 = 0.854 >= 0.8 */
    cr_expect_str_eq(line_after(out, "4. top-p 0.8", "  kept:"), " the a cat");
    /* min-p 0.1: p >= 0.0448 */
    cr_expect_str_eq(line_after(out, "5a. min-p 0.1", "  kept:"), " the a cat dog");
    /* typical-p 0.4: |-ln p - H| is 0.143 (a), 0.557 (cat), 0.643 (the): a + cat = 0.406 */
    cr_expect_str_eq(line_after(out, "5b. typical-p 0.4", "  kept:"), " a cat");
    /* CTRL: divide the positive logit, multiply the negative one */
    expect_text(out, "the:  3.00 -> 2.00");
    expect_text(out, "moon: -2.00 -> -3.00");
    /* the two orders: temperature 0.5 first gives 0.669, 0.915: top-p 0.8 keeps two */
    const char *orders = strstr(out, "8. the two chain orders");
    cr_assert_not_null(orders);
    cr_expect_not_null(strstr(orders, "  kept: the a cat "), "left column:\n%s", orders);
    cr_expect_not_null(strstr(orders, "kept: the a\n"), "right column:\n%s", orders);
    free(out);
}

/* The grammar's mask keeps two pieces per step, so each step's choice is a softmax of two
 * logits: 1 / (1 + e^-(difference)): 0.5 -> 0.6225, 0.6 -> 0.6457. Guidance at S = 3: the
 * mixed logits are 3.8, 2.7, 3.4, 1.4, 0.7, -0.2, -1.2, -9, whose softmax gives cat
 * e^3.4 / 96.734 = 0.3098 (worked out with a calculator). */
Test(notebooks, constrained_generation_masks_and_mixes_as_by_hand)
{
    char *out = run_notebook("11_constrained_generation", "");
    expect_text(out, "step 1: 2 of 8 pieces allowed after \"\"");
    cr_expect(fabs(number_after(out, "step 1:", "chosen: \"the \" (p ") - 0.6225) < 1e-4);
    cr_expect(fabs(number_after(out, "step 2:", "chosen: \"cat \" (p ") - 0.6457) < 1e-4);
    expect_text(out, "step 4: 1 of 8 pieces allowed after \"the cat sat\"");
    expect_text(out, "text: \"the cat sat.\"  complete: yes  can go on: no");
    const char *cat = strstr(strstr(out, "2. guidance"), "  cat ");
    cr_assert_not_null(cat, "%s", out);
    double cond, uncond, s0, s1, s15, s3;
    cr_assert_eq(sscanf(cat, "  cat %lf %lf %lf %lf %lf %lf", &cond, &uncond, &s0, &s1, &s15, &s3),
                 6, "%s", cat);
    cr_expect(fabs(s3 - 0.3098) < 1e-4, "p(cat | S=3) %g", s3);
    /* S = 1 is the conditional softmax (notebook 5's 0.135), S = 0 the unconditional one */
    cr_expect(fabs(s1 - 0.1348) < 1e-4, "p(cat | S=1) %g", s1);
    free(out);
}

/* Positions run for n new tokens after a 4-token prompt: with the cache, the prompt and
 * then one per token but the last, 4 + n - 1; without, the prompt and then the whole text
 * at every step, 4 + sum over k = 5 .. n + 3 of k. */
Test(notebooks, kv_cache_changes_the_cost_not_the_result)
{
    char *out = run_notebook("06_kv_cache", "");
    cr_expect_lt(number_after(out, NULL, "max |diff| over all 16 positions: "), 1e-4);
    expect_text(out, "same tokens with and without the cache: yes");
    int compared = 0;
    for (int n = 16; n <= 128; n *= 2) {
        char row[32];
        snprintf(row, sizeof row, "\n   %10d ", n);
        const char *at = strstr(out, row);
        cr_assert_not_null(at, "no row for %d tokens", n);
        long with, without, want_without = 4;
        cr_assert_eq(sscanf(at + strlen(row), "%ld / %ld", &with, &without), 2);
        for (int k = 5; k <= n + 3; k++)
            want_without += k;
        cr_expect_eq(with, 4 + n - 1, "%d tokens: %ld positions with the cache", n, with);
        cr_expect_eq(without, want_without, "%d tokens: %ld positions without", n, without);
        compared++;
    }
    cr_expect_eq(compared, 4);
    free(out);
}

Test(notebooks, beam_search_by_hand_equals_the_library)
{
    SHARED_FILE_OR_SKIP(model, "models/stories260K.gguf");
    char *out = run_notebook("07_beam_search", model);
    expect_text(out, "same best text as by hand: yes");
    /* a sum of log-probabilities only falls: without a length penalty, one token wins */
    expect_text(out, "alpha 0.0: best is 1 tokens");
    free(out);
}

Test(notebooks, gguf_blocks_by_hand_equal_the_library)
{
    SHARED_FILE_OR_SKIP(q4_0, "models/qtest-Q4_0.gguf");
    SHARED_FILE_OR_SKIP(q4_k, "models/qtest-Q4_K_M.gguf");
    char args[1024];
    snprintf(args, sizeof args, "%s %s", q4_0, q4_k);
    char *out = run_notebook("08_gguf", args);
    expect_text(out, "magic \"GGUF\", version 3");
    expect_text(out, "gguf_open read the same: yes");
    expect_text(out, "Q4_0 by hand vs quant_dequantize_row, max |diff| over 32: 0\n");
    expect_text(out, "Q4_K by hand vs quant_dequantize_row, max |diff| over 256: 0\n");
    free(out);
}

/* llama.cpp's greedy text for the same prompt, from the reference file (hex-encoded). */
static char *reference_greedy_text(const char *ref_path)
{
    char *json;
    size_t len;
    Error err;
    cr_assert_eq(file_read_all(ref_path, &json, &len, &err), 0, "%s", err.msg);
    const char *hex = strstr(json, "\"greedy_text_hex\"");
    cr_assert_not_null(hex, "%s: no greedy_text_hex", ref_path);
    hex = strchr(hex + strlen("\"greedy_text_hex\""), '"') + 1;
    char *text = calloc(strlen(hex) / 2 + 1, 1);
    unsigned byte;
    for (size_t i = 0; sscanf(hex + 2 * i, "%2x", &byte) == 1 && hex[2 * i] != '"'; i++)
        text[i] = (char)byte;
    free(json);
    return text;
}

Test(notebooks, decode_loop_follows_llama_cpp_greedy_text)
{
    SHARED_FILE_OR_SKIP(model, "models/stories260K.gguf");
    SHARED_FILE_OR_SKIP(ref, "models/stories260K.ref.json");
    char *out = run_notebook("09_decode_loop", model);
    char *want = reference_greedy_text(ref);
    const char *got = line_after(out, "step 0", "greedy text: \"");
    size_t n = strlen(got) - 1; /* without the closing quote */
    cr_expect(n > 10 && strncmp(got, want, n) == 0, "greedy text \"%.*s\" is not the start of "
              "llama.cpp's \"%s\"", (int)n, got, want);
    free(want);
    free(out);
}

/* Notebook 10 runs the same loop through include/quill.h alone: the prompt's ids are
 * llama.cpp's, and the greedy text is the start of llama.cpp's. */
Test(notebooks, public_api_follows_llama_cpp_greedy_text)
{
    SHARED_FILE_OR_SKIP(model, "models/stories260K.gguf");
    SHARED_FILE_OR_SKIP(ref, "models/stories260K.ref.json");
    char *out = run_notebook("10_public_api", model);
    expect_text(out, "\"Once upon a time\" is 5 tokens: 1 '<s>' 403 ' Once' 407 ' upon' 261 ' a' "
                     "378 ' time'");
    char *want = reference_greedy_text(ref);
    const char *got = line_after(out, "step ", "greedy text: \"");
    size_t n = strlen(got) - 1; /* without the closing quote */
    cr_expect(n > 10 && strncmp(got, want, n) == 0, "greedy text \"%.*s\" is not the start of "
              "llama.cpp's \"%s\"", (int)n, got, want);
    expect_text(out, "sequence 0 holds 15 positions");
    free(want);
    free(out);
}

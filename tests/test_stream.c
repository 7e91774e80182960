/* The output stream against hand-written token sequences: stop strings across token
 * boundaries, inside a token, and as a prefix that never completes; a character split
 * over byte tokens; what is written when. */
#include <criterion/criterion.h>
#include <string.h>

#include "stream.h"

typedef struct {
    char text[256];
    size_t len;
} Written;

static void collect(void *ctx, const char *bytes, size_t n)
{
    Written *w = ctx;
    cr_assert_lt(w->len + n, sizeof w->text);
    memcpy(w->text + w->len, bytes, n);
    w->len += n;
    w->text[w->len] = '\0';
}

/* Pushes tokens one by one; after token i, exactly after[i] must have been written. Returns
 * the push that reported a stop (-1 for none); finish is called at the end. */
static int run_tokens(char *const *stops, int n_stops, const char *const *tokens,
                      const char *const *after, int n, const char *final)
{
    Written w = {{0}, 0};
    TextStream s;
    Error err;
    text_stream_init(&s, stops, n_stops, collect, &w);
    int stopped_at = -1;
    for (int i = 0; i < n && stopped_at < 0; i++) {
        int r = text_stream_push(&s, tokens[i], strlen(tokens[i]), &err);
        cr_assert_geq(r, 0, "%s", err.msg);
        cr_expect_str_eq(w.text, after[i], "after token %d", i);
        if (r == 1)
            stopped_at = i;
    }
    text_stream_finish(&s);
    cr_expect_str_eq(w.text, final, "at the end");
    text_stream_free(&s);
    return stopped_at;
}

Test(stream, a_stop_string_spanning_two_tokens_is_never_written)
{
    char *stops[] = {"\n\n"};
    const char *tokens[] = {"Hello", " world\n", "\nMore"};
    const char *after[] = {"Hello", "Hello world", "Hello world"};
    cr_expect_eq(run_tokens(stops, 1, tokens, after, 3, "Hello world"), 2);
}

Test(stream, a_prefix_that_never_completes_is_written_once_disproved_or_at_the_end)
{
    char *stops[] = {"STOP"};
    const char *tokens[] = {"abST", "Ox", "yzSTO"};
    const char *after[] = {"ab", "abSTOx", "abSTOxyz"};
    cr_expect_eq(run_tokens(stops, 1, tokens, after, 3, "abSTOxyzSTO"), -1);
}

Test(stream, a_stop_in_the_middle_of_a_token_cuts_the_token)
{
    char *stops[] = {"END", "STOP"};
    const char *tokens[] = {"one ", "twoSTOPthree"};
    const char *after[] = {"one ", "one two"};
    cr_expect_eq(run_tokens(stops, 2, tokens, after, 2, "one two"), 1);
}

Test(stream, the_earliest_of_several_stop_strings_wins)
{
    char *stops[] = {"cd", "bc"};
    const char *tokens[] = {"abcd"};
    const char *after[] = {"a"};
    cr_expect_eq(run_tokens(stops, 2, tokens, after, 1, "a"), 0);
}

/* U+1F600 is F0 9F 98 80: as four byte tokens, nothing is written before the last one. */
Test(stream, an_emoji_split_over_byte_tokens_is_written_whole)
{
    const char *tokens[] = {"x\xf0", "\x9f", "\x98", "\x80y"};
    const char *after[] = {"x", "x", "x", "x\xf0\x9f\x98\x80y"};
    cr_expect_eq(run_tokens(NULL, 0, tokens, after, 4, "x\xf0\x9f\x98\x80y"), -1);
}

Test(stream, an_unfinished_character_at_the_end_is_flushed_as_bytes)
{
    const char *tokens[] = {"ok\xe2\x96"};
    const char *after[] = {"ok"};
    run_tokens(NULL, 0, tokens, after, 1, "ok\xe2\x96");
}

Test(stream, escapes_in_stop_strings)
{
    char out[32];
    Error err;
    cr_assert_eq(text_unescape("a\\nb\\t\\\\\\x41\\\"", out, &err), 0, "%s", err.msg);
    cr_expect_str_eq(out, "a\nb\t\\A\"");
    cr_expect_eq(text_unescape("bad\\q", out, &err), -1);
    cr_expect_not_null(strstr(err.msg, "unknown escape at byte 3"), "%s", err.msg);
    cr_expect_eq(text_unescape("nul\\x00", out, &err), -1, "a NUL would end the string");
    cr_expect_eq(text_unescape("end\\", out, &err), -1);
}

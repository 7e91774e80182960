/* The JSON strings of --output-file on byte strings whose output is worked out by hand:
 * escapes, valid UTF-8 as it is, and each ill-formed sequence as one U+FFFD, cut where
 * Unicode's "maximal subpart" rule cuts (the rule Python's bytes.decode(errors="replace")
 * and browsers follow: the longest start of a well-formed sequence, or else one byte). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../generate/jsonl.h"

#define FFFD "\xEF\xBF\xBD"

/* json_write_string's output for n bytes, and whether it said they were valid UTF-8. */
static char *written(const char *bytes, size_t n, bool *valid)
{
    char *text;
    size_t len;
    FILE *out = open_memstream(&text, &len);
    cr_assert_not_null(out);
    *valid = json_write_string(out, bytes, n);
    fclose(out);
    return text;
}

Test(jsonl, strings_escape_and_replace_ill_formed_utf8)
{
    const struct {
        const char *bytes;
        size_t n;
        const char *json;
        bool valid;
    } cases[] = {
        {"a\"b\\c\n\t\x01", 8, "\"a\\\"b\\\\c\\n\\t\\u0001\"", true},
        {"\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80", 11, "\"\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80\"",
         true},
        /* a generation that stopped inside a 4-byte character: one replacement */
        {"a\xF0", 2, "\"a" FFFD "\"", false},
        {"a\xF0\x9F\x98", 4, "\"a" FFFD "\"", false},
        /* a lone continuation byte, and a start byte followed by no continuation */
        {"\x80x", 2, "\"" FFFD "x\"", false},
        {"\xE2x", 2, "\"" FFFD "x\"", false},
        /* overlong (C0 AF), a surrogate (ED A0 80) and above U+10FFFF (F4 90 80 80): no
         * well-formed sequence starts with these pairs, so each byte is replaced alone */
        {"\xC0\xAF", 2, "\"" FFFD FFFD "\"", false},
        {"\xED\xA0\x80", 3, "\"" FFFD FFFD FFFD "\"", false},
        {"\xF4\x90\x80\x80", 4, "\"" FFFD FFFD FFFD FFFD "\"", false},
        /* but E0 A0 is a good start that a non-continuation byte cuts: one replacement */
        {"\xE0\xA0z", 3, "\"" FFFD "z\"", false},
        {"\xFF", 1, "\"" FFFD "\"", false},
    };
    int compared = 0;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        bool valid;
        char *json = written(cases[i].bytes, cases[i].n, &valid);
        cr_expect_str_eq(json, cases[i].json, "case %zu", i);
        cr_expect_eq(valid, cases[i].valid, "case %zu", i);
        free(json);
        compared++;
    }
    cr_assert_eq(compared, 11);
}

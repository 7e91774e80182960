/* The one UTF-8 decoder against the Unicode Standard's own examples: Table 3-8 (chapter
 * 3.9, "U+FFFD Substitution of Maximal Subparts"), where each maximal subpart of an
 * ill-formed sequence becomes one U+FFFD, and code points worked out by hand from the bit
 * layout of Table 3-6. */
#include <criterion/criterion.h>
#include <string.h>

#include "utf8.h"

enum { REPLACEMENT = 0xFFFD };

/* Decodes s[0..n) as a JSON writer does: each character, or U+FFFD per maximal subpart. */
static int decode_all(const char *s, size_t n, uint32_t *out)
{
    int count = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int len = utf8_decode((const unsigned char *)s + i, n - i, &cp);
        out[count++] = len > 0 ? cp : REPLACEMENT;
        i += (size_t)(len > 0 ? len : -len);
    }
    return count;
}

Test(utf8, maximal_subparts_as_unicode_table_3_8)
{
    /* Table 3-8: 61 F1 80 80 E1 80 C2 62 80 63 80 BF 64 reads as
     * a FFFD FFFD FFFD b FFFD c FFFD FFFD d */
    const char bytes[] = "\x61\xF1\x80\x80\xE1\x80\xC2\x62\x80\x63\x80\xBF\x64";
    const uint32_t want[] = {'a', REPLACEMENT, REPLACEMENT, REPLACEMENT, 'b', REPLACEMENT,
                             'c', REPLACEMENT, REPLACEMENT, 'd'};
    uint32_t got[16];
    int n = decode_all(bytes, sizeof bytes - 1, got);
    cr_assert_eq(n, 10);
    for (int i = 0; i < n; i++)
        cr_expect_eq(got[i], want[i], "character %d: %04x, want %04x", i, got[i], want[i]);
}

/* Well-formed characters of each length, and the forms Table 3-7 rules out. */
Test(utf8, code_points_and_ill_formed_sequences)
{
    const struct {
        const char *bytes;
        int32_t code; /* utf8_code: -1 when not exactly one well-formed character */
    } cases[] = {
        {"A", 0x41},
        {"\xC3\xA9", 0xE9},             /* é: 110 00011, 10 101001 */
        {"\xE2\x96\x81", 0x2581},       /* ▁: 1110 0010, 10 010110, 10 000001 */
        {"\xF0\x9F\x98\x80", 0x1F600},  /* 😀 */
        {"\xF4\x8F\xBF\xBF", 0x10FFFF}, /* the last code point */
        {"\xC0\x80", -1},               /* overlong 0 */
        {"\xE0\x9F\xBF", -1},           /* overlong U+07FF */
        {"\xED\xA0\x80", -1},           /* the surrogate U+D800 */
        {"\xF4\x90\x80\x80", -1},       /* U+110000 */
        {"\x80", -1},                   /* a continuation byte alone */
        {"\xE2\x96", -1},               /* cut short */
        {"AB", -1},                     /* two characters */
    };
    int compared = 0;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++, compared++) {
        const unsigned char *s = (const unsigned char *)cases[i].bytes;
        cr_expect_eq(utf8_code(s, strlen(cases[i].bytes)), cases[i].code, "case %zu", i);
    }
    cr_expect_eq(compared, 12);
}

/* utf8_len reads the lead byte's high bits as llama.cpp does, for any byte. */
Test(utf8, len_from_the_lead_byte_alone)
{
    cr_expect_eq(utf8_len(0x41), 1);
    cr_expect_eq(utf8_len(0x80), 1); /* a continuation byte: one step on */
    cr_expect_eq(utf8_len(0xC3), 2);
    cr_expect_eq(utf8_len(0xE2), 3);
    cr_expect_eq(utf8_len(0xF0), 4);
    cr_expect_eq(utf8_len(0xFF), 4);
}

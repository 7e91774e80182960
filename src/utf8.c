#include "utf8.h"

size_t utf8_len(unsigned char lead)
{
    static const unsigned char len_by_high_bits[16] = {1, 1, 1, 1, 1, 1, 1, 1,
                                                       1, 1, 1, 1, 2, 2, 3, 4};
    return len_by_high_bits[lead >> 4];
}

/* The lead byte decides the length and the range of the second byte (Table 3-7): that range
 * is what rules out overlong forms (E0 80..9F, F0 80..8F), surrogates (ED A0..BF) and code
 * points above U+10FFFF (F4 90..); every later byte is 80..BF. */
int utf8_decode(const unsigned char *s, size_t n, uint32_t *code_point)
{
    unsigned char lead = s[0], low = 0x80, high = 0xBF;
    size_t need;
    if (lead < 0x80) {
        *code_point = lead;
        return 1;
    }
    if (lead >= 0xC2 && lead <= 0xDF) {
        need = 2;
    } else if (lead >= 0xE0 && lead <= 0xEF) {
        need = 3;
        low = lead == 0xE0 ? 0xA0 : 0x80;
        high = lead == 0xED ? 0x9F : 0xBF;
    } else if (lead >= 0xF0 && lead <= 0xF4) {
        need = 4;
        low = lead == 0xF0 ? 0x90 : 0x80;
        high = lead == 0xF4 ? 0x8F : 0xBF;
    } else {
        return -1; /* a continuation byte, C0, C1 or F5..FF: never a start */
    }
    uint32_t cp = lead & (0x7F >> need); /* the lead byte's payload bits */
    size_t i = 1;
    for (; i < need && i < n && s[i] >= low && s[i] <= high; i++) {
        cp = cp << 6 | (s[i] & 0x3F);
        low = 0x80;
        high = 0xBF;
    }
    if (i < need)
        return -(int)i;
    *code_point = cp;
    return (int)need;
}

int32_t utf8_code(const unsigned char *s, size_t n)
{
    uint32_t cp = 0;
    return n > 0 && utf8_decode(s, n, &cp) == (int)n ? (int32_t)cp : -1;
}

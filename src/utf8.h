/* UTF-8, the one decoder every part of quill uses: the tokenizer cutting text into
 * characters, the trainer counting them, the chat templates trimming white space, and
 * --output-file writing JSON strings.
 *
 *   bytes        code points          lead byte  continuation bytes
 *   1            U+0000..U+007F       0xxxxxxx
 *   2            U+0080..U+07FF       110xxxxx   10xxxxxx
 *   3            U+0800..U+FFFF       1110xxxx   10xxxxxx x2  (no surrogates D800..DFFF)
 *   4            U+10000..U+10FFFF    11110xxx   10xxxxxx x3
 *
 * A sequence is well-formed when it is the shortest one for its code point (C0 80 is an
 * "overlong" 0), is no surrogate and stays at or below U+10FFFF: Unicode's Table 3-7. */
#ifndef QUILL_UTF8_H
#define QUILL_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* The length of the character that starts with byte `lead`, read from its high 4 bits as
 * llama.cpp does (0x0-0xB: 1, 0xC-0xD: 2, 0xE: 3, 0xF: 4) without checking that the bytes
 * after it are valid: a scan that steps by it always moves on, whatever the bytes are, and
 * cuts text where llama.cpp's tokenizer does. Callers clip it at the end of the text. */
size_t utf8_len(unsigned char lead);

/* The well-formed character at the start of s[0..n) (n >= 1): returns its length and sets
 * *code_point; or, when s does not start with one, returns minus the length of the longest
 * start of one there (at least 1 byte: the "maximal subpart" that one U+FFFD replaces) and
 * leaves *code_point alone. */
int utf8_decode(const unsigned char *s, size_t n, uint32_t *code_point);

/* The code point of s[0..n) when those n bytes are exactly one well-formed character, else
 * -1. */
int32_t utf8_code(const unsigned char *s, size_t n);

#endif

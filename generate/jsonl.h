/* --output-file: one JSON object per line for each sample or beam (JSON Lines), which any
 * JSON reader takes (Python's json, jq, a browser):
 *
 *   {"text":"...","tokens":[...],"finish_reason":"stop","seed":42,"settings":{...}}
 *
 * JSON text is UTF-8, but a generation is bytes: it can stop inside a character (a byte
 * token <0xF0>, then the end), and a model can write bytes that are no text at all. Those
 * cannot go into a JSON string as they are (a reader refuses the whole line), so "text"
 * holds the bytes with each ill-formed sequence replaced by U+FFFD, as Python's
 * bytes.decode(errors="replace") does, and "text_hex" is added beside it with the exact
 * bytes, two hex digits each. Valid text has no "text_hex". */
#ifndef QUILL_GENERATE_JSONL_H
#define QUILL_GENERATE_JSONL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "options.h"
#include "session.h"

/* Writes the n bytes at s as a JSON string: quotes, backslashes and control characters
 * escaped, UTF-8 as it is, and each ill-formed sequence as one U+FFFD, cut at Unicode's
 * "maximal subpart" (the longest start of a well-formed sequence, or else one byte).
 * Returns true when the bytes were valid UTF-8, so that nothing was replaced. */
bool json_write_string(FILE *out, const char *s, size_t n);

/* One line per completion: its text (and text_hex when it is not valid UTF-8), tokens,
 * finish reason, seed, score for beams, and o's settings. */
void jsonl_write_completions(FILE *out, const GenerateOptions *o, const Completion *c, int n);

#endif

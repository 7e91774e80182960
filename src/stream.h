/* Generated text on its way out. Tokens arrive as byte strings, and two things can only be
 * decided by looking ahead, so the stream holds bytes back until they are decided:
 *   - UTF-8: a byte token may end in the middle of a character; printing half a character
 *     shows garbage, so the character's bytes wait until it is complete;
 *   - stop strings: they are matched on the text, not on tokens, so one may span two tokens
 *     ("\n\n" as "\n" + "\n"), start in the middle of a token, or begin and never
 *     complete. Bytes that could still be the start of a stop string wait; a completed
 *     stop string ends the stream and is never written; text that turns out not to be a
 *     stop string is written as soon as that is known, or at the end. */
#ifndef QUILL_STREAM_H
#define QUILL_STREAM_H

#include <stdbool.h>
#include <stddef.h>

#include "error.h"

/* Where decided bytes go (a completion's text, from which the session tells its caller). */
typedef void TextSink(void *ctx, const char *bytes, size_t n);

typedef struct {
    TextSink *sink;
    void *sink_ctx;
    char *const *stops; /* borrowed: the stop strings, non-empty */
    int n_stops;
    char *pending;      /* bytes received, not yet written */
    size_t len, cap;
    int stopped_by;     /* index of the stop string that ended the stream, or -1 */
} TextStream;

void text_stream_init(TextStream *s, char *const *stops, int n_stops, TextSink *sink,
                      void *sink_ctx);
void text_stream_free(TextStream *s); /* NULL-safe */

/* dst becomes an independent copy of src (its held-back bytes, whether it stopped) that
 * writes to another sink: a beam that branches takes its parent's stream. dst must not be
 * initialised. */
int text_stream_copy(TextStream *dst, const TextStream *src, TextSink *sink, void *sink_ctx,
                     Error *err);

/* Takes n more bytes and writes what is decided. Returns 1 when a stop string completed
 * (the stream is then over: the text before it has been written, the stop string and
 * anything after it never will be), 0 otherwise, -1 when out of memory. */
int text_stream_push(TextStream *s, const char *bytes, size_t n, Error *err);

/* The end of the text: writes whatever was held back (a stop string's unfinished start, the
 * bytes of an incomplete character). Does nothing after a stop. */
void text_stream_finish(TextStream *s);

/* Where the earliest of the stop strings starts in text[0..len), among those that end after
 * byte `from` (the text before it was searched already: 0 searches it all), and which one
 * it is; len and *which = -1 when there is none. */
size_t text_find_stop(const char *text, size_t len, size_t from, char *const *stops,
                      int n_stops, int *which);

/* Turns the escapes a user types in --stop into bytes: \n, \t, \r, \\, \", \' and \xHH.
 * Writes at most strlen(text) + 1 bytes into out (NUL-terminated); an unknown escape is an
 * error naming it. */
int text_unescape(const char *text, char *out, Error *err);

#endif

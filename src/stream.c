#include "stream.h"

#include <stdlib.h>
#include <string.h>

#include "buffer.h"
#include "utf8.h"

void text_stream_init(TextStream *s, char *const *stops, int n_stops, TextSink *sink,
                      void *sink_ctx)
{
    memset(s, 0, sizeof *s);
    s->sink = sink;
    s->sink_ctx = sink_ctx;
    s->stops = stops;
    s->n_stops = n_stops;
    s->stopped_by = -1;
}

void text_stream_free(TextStream *s)
{
    if (!s)
        return;
    free(s->pending);
    memset(s, 0, sizeof *s);
    s->stopped_by = -1;
}

int text_stream_copy(TextStream *dst, const TextStream *src, TextSink *sink, void *sink_ctx,
                     Error *err)
{
    text_stream_init(dst, src->stops, src->n_stops, sink, sink_ctx);
    dst->stopped_by = src->stopped_by;
    if (buffer_reserve(&dst->pending, &dst->cap, src->len, 64, "the output text", err) != 0)
        return -1;
    if (src->len > 0)
        memcpy(dst->pending, src->pending, src->len);
    dst->len = src->len;
    return 0;
}

/* Length of the longest suffix of the n bytes at p that is a proper prefix of stop: those
 * bytes may yet become the stop string. */
static size_t stop_prefix_at_end(const char *p, size_t n, const char *stop)
{
    size_t stop_len = strlen(stop);
    for (size_t k = stop_len - 1 < n ? stop_len - 1 : n; k > 0; k--)
        if (memcmp(p + n - k, stop, k) == 0)
            return k;
    return 0;
}

/* Length of the unfinished UTF-8 character at the end of the n bytes at p (0 when the last
 * character is complete, or is no valid start of one: such bytes are written as they are). */
static size_t utf8_unfinished_tail(const char *p, size_t n)
{
    for (size_t back = 1; back <= 3 && back <= n; back++) {
        unsigned char c = (unsigned char)p[n - back];
        if ((c & 0xc0) == 0x80)
            continue; /* a continuation byte: the character starts further back */
        return utf8_len(c) > back ? back : 0;
    }
    return 0;
}

size_t text_find_stop(const char *text, size_t len, size_t from, char *const *stops,
                      int n_stops, int *which)
{
    size_t best = len;
    *which = -1;
    for (int i = 0; i < n_stops; i++) {
        size_t stop_len = strlen(stops[i]);
        size_t at = from + 1 >= stop_len ? from + 1 - stop_len : 0;
        for (; at + stop_len <= len && at < best; at++) {
            if (memcmp(text + at, stops[i], stop_len) == 0) {
                best = at;
                *which = i;
                break;
            }
        }
    }
    return best;
}

/* Writes the first n pending bytes and keeps the rest. */
static void emit(TextStream *s, size_t n)
{
    if (n > 0)
        s->sink(s->sink_ctx, s->pending, n);
    if (s->len > n)
        memmove(s->pending, s->pending + n, s->len - n);
    s->len -= n;
}

int text_stream_push(TextStream *s, const char *bytes, size_t n, Error *err)
{
    if (s->stopped_by >= 0)
        return 1;
    if (n == 0) /* a token with no text (a control token) decides nothing */
        return 0;
    if (buffer_reserve(&s->pending, &s->cap, s->len + n, 64, "the output text", err) != 0)
        return -1;
    memcpy(s->pending + s->len, bytes, n);
    s->len += n;
    int which;
    size_t stop_at = text_find_stop(s->pending, s->len, 0, s->stops, s->n_stops, &which);
    if (which >= 0) {
        emit(s, stop_at);
        s->len = 0;
        s->stopped_by = which;
        return 1;
    }
    size_t hold = utf8_unfinished_tail(s->pending, s->len);
    for (int i = 0; i < s->n_stops; i++) {
        size_t k = stop_prefix_at_end(s->pending, s->len, s->stops[i]);
        hold = k > hold ? k : hold;
    }
    emit(s, s->len - hold);
    return 0;
}

void text_stream_finish(TextStream *s)
{
    if (s->stopped_by < 0)
        emit(s, s->len);
}

static int hex_value(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

int text_unescape(const char *text, char *out, Error *err)
{
    static const char simple[][2] = {{'n', '\n'}, {'t', '\t'}, {'r', '\r'},
                                     {'\\', '\\'}, {'"', '"'},  {'\'', '\''}};
    size_t o = 0;
    for (const char *p = text; *p; p++) {
        if (*p != '\\') {
            out[o++] = *p;
            continue;
        }
        p++;
        size_t i = 0;
        while (i < sizeof simple / sizeof *simple && simple[i][0] != *p)
            i++;
        if (i < sizeof simple / sizeof *simple) {
            out[o++] = simple[i][1];
        } else if (*p == 'x' && hex_value(p[1]) >= 0 && hex_value(p[2]) >= 0 &&
                   hex_value(p[1]) * 16 + hex_value(p[2]) != 0) {
            out[o++] = (char)(hex_value(p[1]) * 16 + hex_value(p[2]));
            p += 2;
        } else {
            char quoted[64];
            return error_set(err, "'%s': unknown escape at byte %zu (quill knows \\n \\t \\r "
                                  "\\\\ \\\" \\' and \\xHH, HH not 00)",
                             error_quote(quoted, sizeof quoted, text, strlen(text)),
                             (size_t)(p - 1 - text));
        }
    }
    out[o] = '\0';
    return 0;
}

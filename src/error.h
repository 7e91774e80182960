/* Errors at two layers: library functions return a status and fill an
 * Error with one line that names the problem; only the command mains print it, as
 * "quill: error: <message>", and exit non-zero.
 *
 * Convention: a function that can fail returns int, 0 on success and -1 on failure, and
 * takes `Error *err` as its last argument. */
#ifndef QUILL_ERROR_H
#define QUILL_ERROR_H

#include <stddef.h>

typedef struct {
    char msg[512]; /* one line, no trailing newline */
} Error;

/* Formats the message into err (when err is not NULL) and returns -1, so that a failing
 * function can end with `return error_set(err, "...", ...);`. */
int error_set(Error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Puts "<context>: " in front of the message already in err and returns -1. */
int error_prefix(Error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Copies n bytes of untrusted text (from a file, a command line) into out, NUL-terminated,
 * so that it can be quoted in a one-line message: printable ASCII stays as it is, quotes,
 * backslashes and every other byte are escaped (\n, \t, \xNN), and text that does not fit
 * ends with "...". No control character from a file reaches the terminal. Returns out. */
const char *error_quote(char *out, size_t cap, const char *text, size_t n);

/* "s" unless n is 1: a count's plural in a message or any line a command prints,
 * printf("%d thread%s", n, plural_s(n)), so that one reads "1 thread", not "1 threads". */
const char *plural_s(long long n);

#endif

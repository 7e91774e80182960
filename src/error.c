#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int error_set(Error *err, const char *fmt, ...)
{
    if (!err)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    return -1;
}

int error_prefix(Error *err, const char *fmt, ...)
{
    if (!err)
        return -1;
    char original[sizeof err->msg];
    memcpy(original, err->msg, sizeof original);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    size_t used = n < 0 ? 0 : (size_t)n;
    if (used + 2 < sizeof err->msg) {
        memcpy(err->msg + used, ": ", 2);
        size_t room = sizeof err->msg - used - 2;
        size_t len = strnlen(original, room - 1);
        memcpy(err->msg + used + 2, original, len);
        err->msg[used + 2 + len] = '\0';
    }
    return -1;
}

/* The escaped spelling of one byte: itself, or a backslash sequence. */
static void quote_byte(unsigned char c, char spelled[5])
{
    const char *named = c == '\n' ? "\\n" : c == '\t' ? "\\t" : c == '\r' ? "\\r"
                      : c == '\\' ? "\\\\" : c == '\'' ? "\\'" : NULL;
    if (named)
        snprintf(spelled, 5, "%s", named);
    else if (c >= 0x20 && c < 0x7f)
        snprintf(spelled, 5, "%c", c);
    else
        snprintf(spelled, 5, "\\x%02x", c);
}

const char *error_quote(char *out, size_t cap, const char *text, size_t n)
{
    static const char ellipsis[] = "...";
    size_t used = 0;
    for (size_t i = 0; i < n; i++) {
        char spelled[5];
        quote_byte((unsigned char)text[i], spelled);
        size_t len = strlen(spelled);
        /* room for this byte, and for "..." if more bytes follow, and the NUL */
        size_t reserve = i + 1 < n ? sizeof ellipsis - 1 : 0;
        if (used + len + reserve + 1 > cap) {
            snprintf(out + used, cap - used, "%s", ellipsis);
            return out;
        }
        memcpy(out + used, spelled, len);
        used += len;
    }
    out[used] = '\0';
    return out;
}

const char *plural_s(long long n)
{
    return n == 1 ? "" : "s";
}

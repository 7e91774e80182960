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

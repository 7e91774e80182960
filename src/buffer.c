#include "buffer.h"

#include <stdlib.h>

int buffer_reserve(char **data, size_t *cap, size_t need, size_t first_cap, const char *what,
                   Error *err)
{
    if (need <= *cap)
        return 0;
    size_t grown_cap = *cap ? *cap : first_cap;
    while (grown_cap < need)
        grown_cap *= 2;
    char *grown = realloc(*data, grown_cap);
    if (!grown)
        return error_set(err, "out of memory for %zu bytes of %s", grown_cap, what);
    *data = grown;
    *cap = grown_cap;
    return 0;
}

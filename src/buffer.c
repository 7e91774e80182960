#include "buffer.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int buffer_reserve_items(void *array, size_t *cap, size_t need, size_t elem_size,
                         size_t first_cap, const char *what, Error *err)
{
    if (need <= *cap)
        return 0;
    size_t grown_cap = *cap ? *cap : first_cap;
    while (grown_cap < need)
        grown_cap *= 2;
    if (grown_cap > SIZE_MAX / elem_size)
        return error_set(err, "out of memory for %zu items of %s", grown_cap, what);
    /* the caller's pointer is read and written as bytes: it may be an int * or a Foo *,
     * and C lets no single pointer type stand for all of them */
    void *data;
    memcpy(&data, array, sizeof data);
    void *grown = realloc(data, grown_cap * elem_size);
    if (!grown)
        return error_set(err, "out of memory for %zu bytes of %s", grown_cap * elem_size, what);
    memcpy(array, &grown, sizeof grown);
    *cap = grown_cap;
    return 0;
}

int buffer_reserve(char **data, size_t *cap, size_t need, size_t first_cap, const char *what,
                   Error *err)
{
    return buffer_reserve_items(data, cap, need, 1, first_cap, what, err);
}

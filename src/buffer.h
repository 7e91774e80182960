/* Growing a heap buffer by doubling: the one way quill's appenders (decoded text, chat
 * prompts, generated text, the word arena, corpus segments, token lists, queues) make
 * room. */
#ifndef QUILL_BUFFER_H
#define QUILL_BUFFER_H

#include <stddef.h>

#include "error.h"

/* Makes *data (*cap bytes, NULL and 0 at first) hold at least `need` bytes: the capacity
 * starts at first_cap and doubles until it fits, and the contents are kept. Doubling makes
 * n appends cost O(n) copying in all. On failure *data is unchanged, and err names `what`
 * ("out of memory for 4096 bytes of chat text"). */
int buffer_reserve(char **data, size_t *cap, size_t need, size_t first_cap, const char *what,
                   Error *err);

/* buffer_reserve for an array of elements of elem_size bytes, with cap, need and first_cap
 * counted in elements. `array` is the address of the array's pointer (&list->ids, whatever
 * its type): e.g. buffer_reserve_items(&l->ids, &l->cap, l->n + 1, sizeof *l->ids, 64,
 * "token ids", err). */
int buffer_reserve_items(void *array, size_t *cap, size_t need, size_t elem_size,
                         size_t first_cap, const char *what, Error *err);

#endif

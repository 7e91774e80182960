#include "heap.h"

#include <stdlib.h>
#include <string.h>

#include "buffer.h"

void heap_init(Heap *h, size_t size, size_t first_cap, HeapBefore *before, const void *ctx)
{
    *h = (Heap){.size = size, .first_cap = first_cap, .before = before, .ctx = ctx};
}

void heap_free(Heap *h)
{
    if (!h)
        return;
    free(h->data);
    h->data = NULL;
    h->n = h->cap = 0;
}

int heap_push(Heap *h, const void *x, const char *what, Error *err)
{
    if (buffer_reserve_items(&h->data, &h->cap, h->n + 1, h->size, h->first_cap, what, err) != 0)
        return -1;
    memcpy(heap_at(h->data, h->size, h->n), x, h->size);
    heap_sift_up(h->data, h->size, h->n++, h->before, h->ctx);
    return 0;
}

void heap_pop(Heap *h, void *out)
{
    memcpy(out, h->data, h->size);
    if (--h->n > 0) {
        memcpy(h->data, heap_at(h->data, h->size, h->n), h->size);
        heap_sift_down(h->data, h->n, h->size, 0, h->before, h->ctx);
    }
}

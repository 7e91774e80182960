/* A binary heap: the array a[0..n) is a heap when no element comes before its parent,
 * a[(i - 1) / 2], in the caller's order, so a[0] comes first of all. Pushing an element
 * lets it rise past the parents it comes before (sift up); popping moves the last element
 * to the root and lets it sink below the children that come before it (sift down): each
 * O(log n). The tokenizers' merge queues (which merge comes first), the BPE trainer's pair
 * queue (the most frequent pair) and top-k's selection (the worst of the best k, to evict)
 * are all this heap with their own order.
 *
 * Elements are any type of up to HEAP_MAX_ELEM bytes, compared by `before(a, b, ctx)`:
 * true when a must come out before b. With a total order (ties broken), the order the
 * elements come out in is a function of the elements alone. */
#ifndef QUILL_HEAP_H
#define QUILL_HEAP_H

#include <assert.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include "error.h"

enum { HEAP_MAX_ELEM = 64 };

typedef bool HeapBefore(const void *a, const void *b, const void *ctx);

/* ---- on an array the caller owns ----
 *
 * heap_sift_down lets a[i] sink below every child that comes before it, in the heap
 * a[0..n); heap_sift_up lets a[i] rise past every parent it comes before; heap_make makes
 * a[0..n) a heap in O(n) (Floyd: sift down from the last parent to the root). They are
 * inline so that a caller with a fixed element size and order (top-k's selection, on every
 * token) gets them compiled for its type, as fast as a hand-written heap. */

static inline void *heap_at(void *a, size_t size, size_t i)
{
    return (char *)a + i * size;
}

/* Both sifts carry the moving element in a local copy and shift the others into the hole
 * it leaves: one copy per level instead of a swap's three. */
static inline void heap_sift_down(void *a, size_t n, size_t size, size_t i,
                                  HeapBefore *before, const void *ctx)
{
    assert(size <= HEAP_MAX_ELEM);
    unsigned char x[HEAP_MAX_ELEM];
    memcpy(x, heap_at(a, size, i), size);
    for (;;) {
        size_t best = i, kid = 2 * i + 1;
        const void *best_elem = x;
        if (kid < n && before(heap_at(a, size, kid), best_elem, ctx)) {
            best = kid;
            best_elem = heap_at(a, size, kid);
        }
        if (kid + 1 < n && before(heap_at(a, size, kid + 1), best_elem, ctx))
            best = kid + 1;
        if (best == i)
            break;
        memcpy(heap_at(a, size, i), heap_at(a, size, best), size);
        i = best;
    }
    memcpy(heap_at(a, size, i), x, size);
}

static inline void heap_sift_up(void *a, size_t size, size_t i, HeapBefore *before,
                                const void *ctx)
{
    assert(size <= HEAP_MAX_ELEM);
    unsigned char x[HEAP_MAX_ELEM];
    memcpy(x, heap_at(a, size, i), size);
    while (i > 0 && before(x, heap_at(a, size, (i - 1) / 2), ctx)) {
        memcpy(heap_at(a, size, i), heap_at(a, size, (i - 1) / 2), size);
        i = (i - 1) / 2;
    }
    memcpy(heap_at(a, size, i), x, size);
}

static inline void heap_make(void *a, size_t n, size_t size, HeapBefore *before,
                             const void *ctx)
{
    for (size_t i = n / 2; i-- > 0;)
        heap_sift_down(a, n, size, i, before, ctx);
}

/* ---- a priority queue that grows ---- */

typedef struct {
    char *data;        /* n elements of `size` bytes, a heap */
    size_t n, cap;     /* cap in elements */
    size_t size;
    size_t first_cap;  /* the capacity of the first allocation, in elements */
    HeapBefore *before;
    const void *ctx;
} Heap;

/* An empty queue (nothing allocated until the first push). */
void heap_init(Heap *h, size_t size, size_t first_cap, HeapBefore *before, const void *ctx);
void heap_free(Heap *h); /* NULL-safe; leaves an empty queue */

/* Adds a copy of *x; err names `what` when memory runs out. */
int heap_push(Heap *h, const void *x, const char *what, Error *err);
/* Removes the first element into *out; the queue must not be empty. */
void heap_pop(Heap *h, void *out);

#endif

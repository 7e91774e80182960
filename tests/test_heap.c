/* The heap against references outside it: the C library's qsort, and a linear search for
 * the least element. Whatever goes in comes out in their order, through pushes and pops
 * interleaved, through heap_make, and as top-k's selection uses it (an evicting heap of
 * the k best). */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "heap.h"
#include "rng.h"

/* An element with a key that repeats, and a tie-break, so that the order is total. */
typedef struct {
    int key;
    int id;
} Item;

static int item_cmp(const void *a, const void *b)
{
    const Item *x = a, *y = b;
    return x->key != y->key ? (x->key > y->key) - (x->key < y->key)
                            : (x->id > y->id) - (x->id < y->id);
}

static bool item_before(const void *a, const void *b, const void *unused)
{
    return item_cmp(a, b) < 0;
}

static bool item_after(const void *a, const void *b, const void *unused)
{
    return item_cmp(a, b) > 0;
}

enum { N = 1000 };

static void random_items(Item *items, int n, uint64_t seed)
{
    Rng r;
    rng_seed(&r, seed);
    for (int i = 0; i < n; i++)
        items[i] = (Item){(int)(rng_uniform(&r) * 50), i}; /* about 20 of each key */
}

/* Push two, pop one, then pop the rest: each pop is the least of what is in, as a linear
 * search over a plain list of the same items finds it. */
Test(heap, each_pop_is_the_least_with_pushes_interleaved)
{
    static Item items[N], in[N];
    random_items(items, N, 1);
    int n_in = 0, pops = 0;
    Heap h;
    heap_init(&h, sizeof(Item), 4, item_before, NULL);
    Error err;
    for (int i = 0; i < N || n_in > 0; i++) {
        if (i < N) {
            cr_assert_eq(heap_push(&h, &items[i], "test items", &err), 0, "%s", err.msg);
            in[n_in++] = items[i];
        }
        if (i >= N || i % 2 == 1) {
            int least = 0;
            for (int j = 1; j < n_in; j++)
                least = item_cmp(&in[j], &in[least]) < 0 ? j : least;
            Item got;
            heap_pop(&h, &got);
            cr_assert_eq(got.id, in[least].id, "pop %d: id %d, the least is %d", pops, got.id,
                         in[least].id);
            in[least] = in[--n_in];
            pops++;
        }
        cr_assert_eq(h.n, (size_t)n_in);
    }
    cr_expect_eq(pops, N);
    heap_free(&h);
}

Test(heap, make_then_pop_everything_is_qsort)
{
    static Item items[N], sorted[N];
    random_items(items, N, 2);
    memcpy(sorted, items, sizeof items);
    qsort(sorted, N, sizeof *sorted, item_cmp);
    heap_make(items, N, sizeof *items, item_before, NULL);
    int compared = 0;
    for (int n = N; n > 0; n--, compared++) {
        cr_assert_eq(items[0].id, sorted[N - n].id, "pop %d", N - n);
        items[0] = items[n - 1];
        heap_sift_down(items, (size_t)n - 1, sizeof *items, 0, item_before, NULL);
    }
    cr_expect_eq(compared, N);
}

/* The k least of N, kept in a heap whose root is the greatest of them (the order turned
 * round), each newcomer less than the root replacing it: qsort's first k. */
Test(heap, evicting_heap_keeps_the_k_least)
{
    enum { K = 37 };
    static Item items[N], sorted[N];
    random_items(items, N, 3);
    memcpy(sorted, items, sizeof items);
    qsort(sorted, N, sizeof *sorted, item_cmp);
    Item kept[K];
    memcpy(kept, items, sizeof kept);
    heap_make(kept, K, sizeof *kept, item_after, NULL);
    for (int i = K; i < N; i++)
        if (item_cmp(&items[i], &kept[0]) < 0) {
            kept[0] = items[i];
            heap_sift_down(kept, K, sizeof *kept, 0, item_after, NULL);
        }
    qsort(kept, K, sizeof *kept, item_cmp);
    cr_expect_arr_eq(kept, sorted, sizeof kept);
}

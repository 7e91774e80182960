#include "word_table.h"

#include <stdlib.h>
#include <string.h>

#include "buffer.h"
#include "hash.h"

enum { WORD_TABLE_FIRST_SLOTS = 1024 };

uint64_t word_table_hash(const char *key, size_t len)
{
    return hash64(key, len);
}

static int slots_alloc(WordTable *t, size_t n_slots, Error *err)
{
    t->slots = calloc(n_slots, sizeof *t->slots);
    if (!t->slots)
        return error_set(err, "out of memory for a table of %zu words", n_slots);
    t->mask = n_slots - 1;
    return 0;
}

int word_table_init(WordTable *t, Error *err)
{
    memset(t, 0, sizeof *t);
    return slots_alloc(t, WORD_TABLE_FIRST_SLOTS, err);
}

void word_table_free(WordTable *t)
{
    if (!t)
        return;
    free(t->slots);
    free(t->arena);
    memset(t, 0, sizeof *t);
}

void word_table_clear(WordTable *t)
{
    memset(t->slots, 0, (t->mask + 1) * sizeof *t->slots);
    t->n = 0;
    t->arena_len = 0;
}

/* The slot that holds key, or the empty slot where it would go. */
static WordSlot *slot_for(const WordTable *t, const char *key, size_t len, uint64_t hash)
{
    for (size_t i = (size_t)hash & t->mask;; i = (i + 1) & t->mask) {
        WordSlot *s = &t->slots[i];
        if (s->key_len == 0 ||
            (s->hash == hash && s->key_len == len && memcmp(t->arena + s->key_at, key, len) == 0))
            return s;
    }
}

uint64_t *word_table_find(const WordTable *t, const char *key, size_t len, uint64_t hash)
{
    WordSlot *s = slot_for(t, key, len, hash);
    return s->key_len ? &s->value : NULL;
}

/* Doubles the slots and puts every key back, by its stored hash. */
static int slots_grow(WordTable *t, Error *err)
{
    WordTable old = *t;
    if (slots_alloc(t, 2 * (old.mask + 1), err) < 0) {
        t->slots = old.slots;
        t->mask = old.mask;
        return -1;
    }
    for (size_t i = 0; i <= old.mask; i++) {
        const WordSlot *s = &old.slots[i];
        if (s->key_len == 0)
            continue;
        size_t j = (size_t)s->hash & t->mask;
        while (t->slots[j].key_len != 0)
            j = (j + 1) & t->mask;
        t->slots[j] = *s;
    }
    free(old.slots);
    return 0;
}

static int arena_append(WordTable *t, const char *key, size_t len, Error *err)
{
    if (buffer_reserve(&t->arena, &t->arena_cap, t->arena_len + len, 64 * 1024, "words",
                       err) != 0)
        return -1;
    memcpy(t->arena + t->arena_len, key, len);
    t->arena_len += len;
    return 0;
}

uint64_t *word_table_insert(WordTable *t, const char *key, size_t len, uint64_t hash,
                            int *added, Error *err)
{
    *added = 0;
    WordSlot *s = slot_for(t, key, len, hash);
    if (s->key_len)
        return &s->value;
    if (len == 0 || len > UINT32_MAX) {
        error_set(err, "a word of %zu bytes cannot be counted", len);
        return NULL;
    }
    if (4 * (t->n + 1) > 3 * (t->mask + 1)) {
        if (slots_grow(t, err) < 0)
            return NULL;
        s = slot_for(t, key, len, hash);
    }
    size_t at = t->arena_len;
    if (arena_append(t, key, len, err) < 0)
        return NULL;
    *s = (WordSlot){.hash = hash, .value = 0, .key_at = at, .key_len = (uint32_t)len};
    t->n++;
    *added = 1;
    return &s->value;
}

size_t word_table_bytes(const WordTable *t)
{
    return (t->mask + 1) * sizeof *t->slots + t->arena_cap;
}

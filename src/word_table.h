/* A hash table from words (byte strings, copied into the table) to 64-bit values: how often
 * a word occurs, while a tokenizer is trained; where a word's token ids are, while a corpus
 * is tokenized. Corpora repeat a few hundred thousand distinct words billions of times, so
 * the table is built for many lookups of short keys:
 *   - open addressing with linear probing, at most 3/4 full, doubled when it gets fuller;
 *   - each slot keeps the key's full 64-bit hash, so a probe compares bytes only when the
 *     hashes agree, and growing never hashes a key again;
 *   - keys live one after another in one growing arena, not in a malloc each.
 * The caller computes the hash (word_table_hash) once and passes it to every call, which
 * lets two tables built from the same text (one per thread) be merged without rehashing. */
#ifndef QUILL_WORD_TABLE_H
#define QUILL_WORD_TABLE_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

typedef struct {
    uint64_t hash;
    uint64_t value;
    uint64_t key_at;  /* the key's first byte in the arena */
    uint32_t key_len; /* 0: the slot is empty (keys are never empty) */
} WordSlot;

typedef struct {
    WordSlot *slots;
    size_t mask; /* slots - 1; the slot count is a power of two */
    size_t n;    /* keys held */
    char *arena;
    size_t arena_len, arena_cap;
} WordTable;

uint64_t word_table_hash(const char *key, size_t len);

int word_table_init(WordTable *t, Error *err);
void word_table_free(WordTable *t); /* leaves *t zeroed; NULL-safe */
void word_table_clear(WordTable *t); /* forgets every key, keeps the memory */

/* The value of key, or NULL when the table does not hold it. */
uint64_t *word_table_find(const WordTable *t, const char *key, size_t len, uint64_t hash);
/* The value of key, added with value 0 when new (*added then says so). NULL when out of
 * memory or when the key is empty or longer than 4 GB (err says which). The pointer is
 * valid until the next insertion. */
uint64_t *word_table_insert(WordTable *t, const char *key, size_t len, uint64_t hash,
                            int *added, Error *err);

/* The key bytes of an occupied slot. */
static inline const char *word_table_key(const WordTable *t, const WordSlot *s)
{
    return t->arena + s->key_at;
}

/* Bytes the table holds (slots and keys), for memory reports. */
size_t word_table_bytes(const WordTable *t);

#endif

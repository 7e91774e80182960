/* 64-bit content hashes: XXH3 from the xxHash library (Debian's libxxhash-dev), which reads
 * tens of GB/s, so that every byte of a checkpoint or a token cache can be checked when it
 * is loaded. Uses:
 *   - integrity: a checksum stored beside the data (train_state's tensors, the token cache's
 *     chunks) and compared on load, which catches a flipped bit that still reads as a
 *     plausible value;
 *   - cache keys: the hash of a corpus and a vocabulary names the token cache they made;
 *   - hash tables: the slot of a piece or a word.
 * Not for security. This is the only file that includes xxhash.h. */
#ifndef QUILL_HASH_H
#define QUILL_HASH_H

#include <stddef.h>
#include <stdint.h>

uint64_t hash64(const void *data, size_t len);

/* The hash of data given in pieces: equal to hash64 of their concatenation. */
typedef struct Hash64Stream Hash64Stream;

Hash64Stream *hash64_stream_new(void); /* NULL when out of memory */
void hash64_stream_add(Hash64Stream *s, const void *data, size_t len);
void hash64_stream_reset(Hash64Stream *s); /* back to the hash of nothing */
uint64_t hash64_stream_value(const Hash64Stream *s);
void hash64_stream_free(Hash64Stream *s); /* NULL-safe */

#endif

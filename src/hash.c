#include "hash.h"

#include <stdlib.h>
#include <xxhash.h>

/* The library's streaming state, under quill's name so that no other file needs
 * xxhash.h. */
struct Hash64Stream {
    XXH3_state_t *state;
};

uint64_t hash64(const void *data, size_t len)
{
    return XXH3_64bits(data, len);
}

Hash64Stream *hash64_stream_new(void)
{
    Hash64Stream *s = malloc(sizeof *s);
    if (!s)
        return NULL;
    s->state = XXH3_createState();
    if (!s->state || XXH3_64bits_reset(s->state) != XXH_OK) {
        hash64_stream_free(s);
        return NULL;
    }
    return s;
}

void hash64_stream_add(Hash64Stream *s, const void *data, size_t len)
{
    XXH3_64bits_update(s->state, data, len);
}

void hash64_stream_reset(Hash64Stream *s)
{
    XXH3_64bits_reset(s->state);
}

uint64_t hash64_stream_value(const Hash64Stream *s)
{
    return XXH3_64bits_digest(s->state);
}

void hash64_stream_free(Hash64Stream *s)
{
    if (!s)
        return;
    XXH3_freeState(s->state);
    free(s);
}

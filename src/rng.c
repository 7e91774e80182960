#include "rng.h"

#include <math.h>

uint64_t rng_mix(uint64_t x)
{
    /* splitmix64: consecutive inputs give unrelated outputs */
    uint64_t z = x + 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void rng_seed(Rng *r, uint64_t seed)
{
    uint64_t z = rng_mix(seed);
    r->state = z ? z : 0x9e3779b97f4a7c15ULL;
}

uint64_t rng_next_u64(Rng *r)
{
    uint64_t x = r->state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    r->state = x;
    return x * 0x2545f4914f6cdd1dULL;
}

float rng_uniform(Rng *r)
{
    return (float)(rng_next_u64(r) >> 40) * (1.0f / 16777216.0f);
}

uint64_t rng_below(Rng *r, uint64_t n)
{
    /* Rejection removes the bias of a plain modulo. */
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do
        x = rng_next_u64(r);
    while (x >= limit);
    return x % n;
}

float rng_normal(Rng *r)
{
    /* u1 in (0, 1] so that log(u1) is finite */
    double u1 = ((double)(rng_next_u64(r) >> 11) + 1.0) * (1.0 / 9007199254740992.0);
    double u2 = (double)(rng_next_u64(r) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

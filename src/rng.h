/* A small deterministic random number generator (xorshift64*), so that a seed gives the
 * same model, the same batches and the same samples on every machine. Its whole state is
 * one integer, which a checkpoint saves so that a resumed run draws the same numbers as an
 * uninterrupted one. */
#ifndef QUILL_RNG_H
#define QUILL_RNG_H

#include <stdint.h>

typedef struct {
    uint64_t state; /* never 0 (xorshift would stay at 0 forever) */
} Rng;

/* Any seed is valid, 0 included: the seed is scrambled (splitmix64) into a nonzero state. */
void rng_seed(Rng *r, uint64_t seed);
/* splitmix64's mix of one integer: a hash whose outputs for consecutive inputs look
 * independent, so that the i-th random number of a stream can be computed without the
 * i - 1 before it (LoRA dropout's masks, lora.h). */
uint64_t rng_mix(uint64_t x);
uint64_t rng_next_u64(Rng *r);
/* Uniform in [0, 1), 24 random bits. */
float rng_uniform(Rng *r);
/* Uniform integer in [0, n), n > 0. */
uint64_t rng_below(Rng *r, uint64_t n);
/* Standard normal N(0, 1) by the Box-Muller transform (no cached second value, so the
 * state stays one integer). */
float rng_normal(Rng *r);

#endif

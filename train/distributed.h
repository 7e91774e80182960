/* Data-parallel training over processes ("ranks") with MPI (Open MPI, Debian's
 * libopenmpi-dev): `mpirun -np N bin/quill train ...` runs N replicas of the model, each on
 * its own share of every step's micro-batches; their gradients are summed, and every rank
 * applies the same update. Without mpirun, quill runs alone and never calls MPI.
 *
 * The sum is taken in a fixed binary tree, the same one a single process uses to add its
 * micro-batches' gradients (trainer.c): with N ranks (a power of two) each holding the sum of
 * its contiguous block of grad_accum / N micro-batches, ranks exchange buffers in pairs at
 * distance 1, 2, 4, ... and each pair adds "lower half + upper half" in that order. So the
 * result, and the model, are byte-identical whatever the number of ranks. This is the only
 * file that includes mpi.h. */
#ifndef QUILL_TRAIN_DISTRIBUTED_H
#define QUILL_TRAIN_DISTRIBUTED_H

#include <stdbool.h>
#include <stddef.h>

#include "error.h"

typedef struct {
    int rank;  /* 0 .. size-1 */
    int size;  /* 1 without mpirun */
    bool mpi;  /* MPI was initialised: the process was started by mpirun */
} Dist;

/* Joins the job when the process was started by mpirun (MPI_Init), otherwise stays a
 * single rank. A job whose size is not a power of two is refused (see above). */
int dist_init(Dist *d, int *argc, char ***argv, Error *err);
void dist_finalize(Dist *d);

static inline bool dist_is_root(const Dist *d)
{
    return d->rank == 0;
}

/* Replaces buf on every rank by the sum of all ranks' buf, in the tree order above. scratch
 * holds n floats. */
int dist_sum_floats(const Dist *d, float *buf, float *scratch, size_t n, Error *err);
/* Every rank's n doubles, in rank order, into all (size * n) on every rank. */
int dist_gather_doubles(const Dist *d, const double *mine, int n, double *all, Error *err);
/* Rank r's slice [offsets[r], offsets[r + 1]) of buf, from each rank to every rank. */
int dist_share_slices(const Dist *d, float *buf, const size_t *offsets, Error *err);
/* Every rank's slice (mine: offsets[rank + 1] - offsets[rank] floats) into all, on rank 0
 * only (all is full size there, unused elsewhere). */
int dist_gather_slices_to_root(const Dist *d, const float *mine, float *all,
                               const size_t *offsets, Error *err);
/* What every rank says at a point where all must go the same way: the largest of the
 * ranks' values (a failure: 1; an interrupt: 1). Without MPI, the value itself. */
int dist_agree(const Dist *d, int value);

#endif

#include "distributed.h"

#include <limits.h>
#include <stdlib.h>

#include <mpi.h>

/* MPI counts are ints: buffers go in pieces of at most this many elements. */
enum { MPI_PIECE = 1 << 30 };

/* mpirun (Open MPI's, or a PMI-based launcher) tells its processes who they are through
 * the environment; a process started any other way runs alone. */
static bool started_by_mpirun(void)
{
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMI_RANK") || getenv("PMIX_RANK");
}

int dist_init(Dist *d, int *argc, char ***argv, Error *err)
{
    *d = (Dist){.rank = 0, .size = 1, .mpi = false};
    if (!started_by_mpirun())
        return 0;
    if (MPI_Init(argc, argv) != MPI_SUCCESS)
        return error_set(err, "MPI_Init failed");
    d->mpi = true;
    MPI_Comm_rank(MPI_COMM_WORLD, &d->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &d->size);
    if (d->size & (d->size - 1))
        return error_set(err, "%d ranks: quill sums gradients in a binary tree so that any "
                              "number of ranks gives the same model, and needs a power of two "
                              "(1, 2, 4, 8, ...)", d->size);
    return 0;
}

void dist_finalize(Dist *d)
{
    if (d->mpi)
        MPI_Finalize();
    d->mpi = false;
}

int dist_sum_floats(const Dist *d, float *buf, float *scratch, size_t n, Error *err)
{
    /* After the exchange at distance `step`, each rank holds the sum of its group of 2*step
     * consecutive ranks: the lower half's sum plus the upper half's, which is the same
     * float on both sides because addition is commutative. */
    for (int step = 1; step < d->size; step *= 2) {
        int partner = d->rank ^ step;
        for (size_t at = 0; at < n; at += MPI_PIECE) {
            int count = n - at < MPI_PIECE ? (int)(n - at) : MPI_PIECE;
            if (MPI_Sendrecv(buf + at, count, MPI_FLOAT, partner, step, scratch + at, count,
                             MPI_FLOAT, partner, step, MPI_COMM_WORLD,
                             MPI_STATUS_IGNORE) != MPI_SUCCESS)
                return error_set(err, "rank %d: exchanging gradients with rank %d failed",
                                 d->rank, partner);
        }
#pragma omp parallel for simd schedule(static) if (n >= (1 << 16))
        for (size_t i = 0; i < n; i++)
            buf[i] += scratch[i];
    }
    return 0;
}

int dist_gather_doubles(const Dist *d, const double *mine, int n, double *all, Error *err)
{
    if (!d->mpi) {
        for (int i = 0; i < n; i++)
            all[i] = mine[i];
        return 0;
    }
    if (MPI_Allgather(mine, n, MPI_DOUBLE, all, n, MPI_DOUBLE, MPI_COMM_WORLD) != MPI_SUCCESS)
        return error_set(err, "rank %d: gathering the losses failed", d->rank);
    return 0;
}

/* Counts and displacements of the slices, as MPI takes them; -1 when a slice is too big. */
static int slice_layout(const Dist *d, const size_t *offsets, int *counts, int *displs)
{
    for (int r = 0; r < d->size; r++) {
        if (offsets[r + 1] - offsets[r] > INT_MAX || offsets[r] > INT_MAX)
            return -1;
        counts[r] = (int)(offsets[r + 1] - offsets[r]);
        displs[r] = (int)offsets[r];
    }
    return 0;
}

int dist_share_slices(const Dist *d, float *buf, const size_t *offsets, Error *err)
{
    if (!d->mpi)
        return 0;
    int *counts = malloc((size_t)d->size * 2 * sizeof *counts);
    if (!counts)
        return error_set(err, "out of memory");
    int rc = slice_layout(d, offsets, counts, counts + d->size) == 0
                 ? MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_FLOAT, buf, counts, counts + d->size,
                                  MPI_FLOAT, MPI_COMM_WORLD)
                 : MPI_ERR_COUNT;
    free(counts);
    return rc == MPI_SUCCESS ? 0 : error_set(err, "rank %d: sharing the parameters failed",
                                             d->rank);
}

int dist_gather_slices_to_root(const Dist *d, const float *mine, float *all,
                               const size_t *offsets, Error *err)
{
    size_t n_mine = offsets[d->rank + 1] - offsets[d->rank];
    if (!d->mpi) {
        for (size_t i = 0; i < n_mine; i++)
            all[i] = mine[i];
        return 0;
    }
    int *counts = malloc((size_t)d->size * 2 * sizeof *counts);
    if (!counts)
        return error_set(err, "out of memory");
    int rc = MPI_ERR_COUNT;
    if (slice_layout(d, offsets, counts, counts + d->size) == 0)
        rc = MPI_Gatherv(mine, (int)n_mine, MPI_FLOAT, all, counts, counts + d->size, MPI_FLOAT,
                         0, MPI_COMM_WORLD);
    free(counts);
    return rc == MPI_SUCCESS ? 0 : error_set(err, "rank %d: gathering the moments failed",
                                             d->rank);
}

int dist_agree(const Dist *d, int value)
{
    int result = value;
    if (d->mpi)
        MPI_Allreduce(&value, &result, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    return result;
}

/* Central finite differences, the outside reference for every hand-written backward.
 *
 * For a scalar loss L(x), the derivative along x_i is estimated as
 *     (L(x + eps e_i) - L(x - eps e_i)) / (2 eps),
 * whose error is O(eps^2) from the curvature plus the rounding noise of the two float
 * forward passes divided by 2 eps. Losses are accumulated in double; with eps = 1e-2 the
 * noise stays near 1e-5, and gradients are compared with |analytic - numeric| <= atol +
 * rtol * |numeric|. */
#ifndef QUILL_GRAD_CHECK_H
#define QUILL_GRAD_CHECK_H

#include <stddef.h>

/* Recomputes the loss from the current inputs. */
typedef double (*LossFn)(void *ctx);

typedef struct {
    double eps, atol, rtol;
} GradTolerance;

/* Checks n entries of x (every `stride`-th one) against the analytic gradient in grad;
 * fails the running Criterion test with the worst entry named by `what`. Returns the
 * largest |analytic - numeric| seen. x is restored. */
double grad_check(const char *what, float *x, const float *grad, size_t n, size_t stride,
                  LossFn loss, void *ctx, GradTolerance tol);

/* Fills x with values uniform in [lo, hi) from a fixed-seed generator. */
void fill_uniform(float *x, size_t n, float lo, float hi, unsigned seed);

/* sum_i a_i * b_i in double: the scalar "loss" that projects an output onto fixed random
 * weights, so that d(loss)/d(output) = b. */
double dot_double(const float *a, const float *b, size_t n);

#endif

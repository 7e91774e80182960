/* Notebook 3: backprop you can check.
 *
 * Training needs dL/dx for every input and weight of every layer, and quill computes them
 * with hand-written backward functions (src/ops.c). A backward pass is easy to get almost
 * right, so here is one, RMSNorm, three ways: derived by hand, computed by the library's
 * rmsnorm_backward, and estimated by finite differences.
 *
 * The forward pass, for one row x of C channels with gains w:
 *
 *     r   = 1 / sqrt(mean_i(x_i^2) + eps)          (one number per row: rstd)
 *     y_i = w_i x_i r
 *
 * and the loss L = sum_i y_i g_i with fixed random g, so that dL/dy = g.
 *
 * By hand. y_i depends on x_j directly (when i = j) and through r (always):
 *
 *     dr/dx_j  = -1/2 (mean(x^2) + eps)^(-3/2) * 2 x_j / C  =  -r^3 x_j / C
 *     dL/dx_j  = sum_i g_i w_i (delta_ij r + x_i dr/dx_j)
 *              = r w_j g_j  -  (r^3 / C) x_j sum_i g_i w_i x_i
 *     dL/dw_j  = g_j x_j r
 *
 * By finite differences. Nudge one input by +eps and -eps, rerun the forward pass:
 *
 *     dL/dx_j  ~  (L(x + eps e_j) - L(x - eps e_j)) / (2 eps)
 *
 * Its error shrinks like eps^2 (the curvature), until float rounding (about 1e-7 of L per
 * forward) divided by 2 eps takes over: for float, eps around 1e-2 is the sweet spot.
 *
 * Build and run:  make notebooks   (or: build/release/notebooks/03_backprop) */
#include <math.h>
#include <stdio.h>

#include "ops.h"
#include "rng.h"

enum { C = 6 };
static const float EPS_NORM = 1e-5f; /* RMSNorm's own epsilon, inside the square root */

static double loss(const float *x, const float *w, const float *g)
{
    float y[C], rstd;
    rmsnorm_forward(y, &rstd, x, w, 1, C, EPS_NORM);
    double sum = 0.0; /* in double, so the loss itself adds no rounding */
    for (int c = 0; c < C; c++)
        sum += (double)y[c] * g[c];
    return sum;
}

/* Central difference for input j with step eps. */
static double finite_difference(float *x, const float *w, const float *g, int j, float eps)
{
    float saved = x[j];
    x[j] = saved + eps;
    double plus = loss(x, w, g);
    x[j] = saved - eps;
    double minus = loss(x, w, g);
    x[j] = saved;
    return (plus - minus) / (2.0 * eps);
}

int main(void)
{
    Rng rng;
    rng_seed(&rng, 1);
    float x[C], w[C], g[C];
    for (int c = 0; c < C; c++) {
        x[c] = 2.0f * rng_uniform(&rng) - 1.0f;
        w[c] = 0.5f + rng_uniform(&rng);
        g[c] = 2.0f * rng_uniform(&rng) - 1.0f;
    }

    /* by the code: one forward (it keeps rstd), one backward with dL/dy = g */
    float y[C], rstd, dx[C] = {0}, dw[C] = {0};
    rmsnorm_forward(y, &rstd, x, w, 1, C, EPS_NORM);
    rmsnorm_backward(dx, dw, g, x, w, &rstd, 1, C);

    /* by hand: the formulas above, in double */
    double mean_sq = 0.0, gwx = 0.0;
    for (int c = 0; c < C; c++) {
        mean_sq += (double)x[c] * x[c] / C;
        gwx += (double)g[c] * w[c] * x[c];
    }
    double r = 1.0 / sqrt(mean_sq + EPS_NORM);
    printf("RMSNorm on one row of %d channels: r = 1/rms = %.6f (the code kept %.6f)\n\n", C, r,
           rstd);

    printf("%-5s %11s %11s %11s %11s %11s\n", "", "by hand", "by the code", "fd eps=1e-1",
           "fd eps=1e-2", "fd eps=1e-4");
    double worst_hand = 0.0, worst_fd = 0.0, worst_dw = 0.0;
    for (int j = 0; j < C; j++) {
        double hand = r * w[j] * g[j] - r * r * r / C * x[j] * gwx;
        double fd[3] = {finite_difference(x, w, g, j, 1e-1f), finite_difference(x, w, g, j, 1e-2f),
                        finite_difference(x, w, g, j, 1e-4f)};
        printf("dx[%d] %11.7f %11.7f %11.7f %11.7f %11.7f\n", j, hand, dx[j], fd[0], fd[1], fd[2]);
        worst_hand = fmax(worst_hand, fabs(hand - dx[j]));
        worst_fd = fmax(worst_fd, fabs(fd[1] - dx[j]));
        worst_dw = fmax(worst_dw, fabs((double)g[j] * x[j] * r - dw[j]));
    }
    printf("\nlargest |by hand - by the code| over dx:            %.1e\n"
           "largest |by hand - by the code| over dw:            %.1e\n"
           "largest |finite difference (eps=1e-2) - by the code|: %.1e\n\n",
           worst_hand, worst_dw, worst_fd);

    printf("With eps = 1e-1 the curvature shows (error ~ eps^2); with 1e-4 float rounding\n"
           "does. In between, the estimate agrees with the code to about 5 digits: that is\n"
           "what tests/test_ops.c asserts for every layer, and tests/test_model.c for every\n"
           "parameter of a whole small model.\n"
           "Try this: in the hand formula, drop the second term (the path through r): the\n"
           "by-hand column then disagrees with the other two already in the first digit, the\n"
           "kind of mistake finite differences catch.\n");
    return 0;
}

/* Notebook 1: is my backward pass right?
 *
 * A hand-written backward pass is easy to get almost right. The standard check is to
 * compare it with finite differences: nudge one input by +eps and -eps, rerun the forward
 * pass, and see how much a scalar loss moved:
 *
 *     dL/dx_i  ~  (L(x + eps e_i) - L(x - eps e_i)) / (2 eps)
 *
 * The error of this estimate shrinks like eps^2, until float rounding (about 1e-7 of L per
 * forward) divided by 2 eps takes over; eps around 1e-2 to 1e-3 is the sweet spot for float.
 *
 * Here we check RMSNorm, y = x / rms(x) * w, on one row of 6 channels. The loss is
 * L = sum_c y_c * r_c with fixed random r, so dL/dy = r is what we feed the backward pass.
 *
 * Build and run:  make && build/release/notebooks/01_gradient_check */
#include <stdio.h>

#include "ops.h"
#include "rng.h"

enum { C = 6 };

static double loss(const float *x, const float *w, const float *r)
{
    float y[C], rstd;
    rmsnorm_forward(y, &rstd, x, w, 1, C, 1e-5f);
    double sum = 0.0; /* in double, so the loss itself adds no rounding */
    for (int c = 0; c < C; c++)
        sum += (double)y[c] * r[c];
    return sum;
}

int main(void)
{
    Rng rng;
    rng_seed(&rng, 1);
    float x[C], w[C], r[C];
    for (int c = 0; c < C; c++) {
        x[c] = 2.0f * rng_uniform(&rng) - 1.0f;
        w[c] = 0.5f + rng_uniform(&rng);
        r[c] = 2.0f * rng_uniform(&rng) - 1.0f;
    }

    /* the analytic gradient: one forward to get rstd, one backward with dL/dy = r */
    float y[C], rstd, dx[C] = {0}, dw[C] = {0};
    rmsnorm_forward(y, &rstd, x, w, 1, C, 1e-5f);
    rmsnorm_backward(dx, dw, r, x, w, &rstd, 1, C);

    printf("RMSNorm, one row of %d channels: analytic vs central differences\n\n", C);
    printf("%-6s %12s %12s %12s   %s\n", "input", "analytic", "eps=1e-1", "eps=1e-2", "eps=1e-4");
    for (int c = 0; c < C; c++) {
        printf("x[%d]  %12.7f", c, dx[c]);
        const float steps[] = {1e-1f, 1e-2f, 1e-4f};
        for (int s = 0; s < 3; s++) {
            float saved = x[c];
            x[c] = saved + steps[s];
            double plus = loss(x, w, r);
            x[c] = saved - steps[s];
            double minus = loss(x, w, r);
            x[c] = saved;
            printf(" %12.7f", (plus - minus) / (2.0 * steps[s]));
        }
        printf("\n");
    }
    printf("\nWith eps = 1e-1 the curvature shows (error ~ eps^2); with 1e-4 float rounding\n"
           "does. In between the columns agree to about 5 digits, and that agreement is what\n"
           "tests/test_ops.c asserts for every layer, and tests/test_model.c for every\n"
           "parameter of a whole small model.\n");
    return 0;
}

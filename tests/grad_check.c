#include "grad_check.h"

#include <criterion/criterion.h>
#include <math.h>

#include "rng.h"

double grad_check(const char *what, float *x, const float *grad, size_t n, size_t stride,
                  LossFn loss, void *ctx, GradTolerance tol)
{
    double worst_excess = -INFINITY, worst_diff = 0.0;
    size_t worst = 0;
    double worst_numeric = 0.0;
    for (size_t i = 0; i < n; i += stride) {
        float saved = x[i];
        x[i] = saved + (float)tol.eps;
        double plus = loss(ctx);
        x[i] = saved - (float)tol.eps;
        double minus = loss(ctx);
        x[i] = saved;
        /* the perturbation actually applied, after rounding to float */
        double step = (double)(saved + (float)tol.eps) - (double)(saved - (float)tol.eps);
        double numeric = (plus - minus) / step;
        double diff = fabs((double)grad[i] - numeric);
        double excess = diff - (tol.atol + tol.rtol * fabs(numeric));
        if (excess > worst_excess) {
            worst_excess = excess;
            worst = i;
            worst_numeric = numeric;
        }
        if (diff > worst_diff)
            worst_diff = diff;
    }
    cr_expect(worst_excess <= 0.0,
              "%s[%zu]: analytic %.6g vs finite difference %.6g (tolerance %.1g + %.1g*|fd|)",
              what, worst, (double)grad[worst], worst_numeric, tol.atol, tol.rtol);
    return worst_diff;
}

void fill_uniform(float *x, size_t n, float lo, float hi, unsigned seed)
{
    Rng rng;
    rng_seed(&rng, seed);
    for (size_t i = 0; i < n; i++)
        x[i] = lo + (hi - lo) * rng_uniform(&rng);
}

double dot_double(const float *a, const float *b, size_t n)
{
    double sum = 0.0;
    for (size_t i = 0; i < n; i++)
        sum += (double)a[i] * b[i];
    return sum;
}

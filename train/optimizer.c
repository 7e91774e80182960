#include "optimizer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const double PI = 3.14159265358979323846;

int optimizer_init(Optimizer *o, OptimizerKind kind, size_t n, Error *err)
{
    memset(o, 0, sizeof *o);
    o->kind = kind;
    o->beta1 = 0.9f;
    o->beta2 = 0.95f;
    o->eps = 1e-8f;
    o->n = n;
    if (kind == OPTIMIZER_ADAMW) {
        o->m = calloc(2 * n, sizeof(float));
        if (!o->m)
            return error_set(err, "out of memory for the AdamW moments of %zu parameters", n);
        o->v = o->m + n;
    }
    return 0;
}

void optimizer_free(Optimizer *o)
{
    if (!o)
        return;
    free(o->m);
    memset(o, 0, sizeof *o);
}

static void adamw_update(Optimizer *o, float *p, const float *g, float *m, float *v, size_t n,
                         float lr, float decay, float bias1, float bias2)
{
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) {
        m[i] = o->beta1 * m[i] + (1.0f - o->beta1) * g[i];
        v[i] = o->beta2 * v[i] + (1.0f - o->beta2) * g[i] * g[i];
        float m_hat = m[i] / bias1, v_hat = v[i] / bias2;
        p[i] -= lr * (m_hat / (sqrtf(v_hat) + o->eps) + decay * p[i]);
    }
}

static void sgd_update(float *p, const float *g, size_t n, float lr, float decay)
{
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++)
        p[i] -= lr * (g[i] + decay * p[i]);
}

void optimizer_step(Optimizer *o, Model *m, const float *grads, float lr, int step)
{
    float bias1 = 1.0f - powf(o->beta1, (float)(step + 1));
    float bias2 = 1.0f - powf(o->beta2, (float)(step + 1));
    for (int i = 0; i < m->n_tensors; i++) {
        const ParamTensor *t = &m->tensors[i];
        size_t n = (size_t)t->rows * t->cols, at = t->offset;
        float decay = t->kind == PARAM_NORM ? 0.0f : o->weight_decay;
        if (o->kind == OPTIMIZER_ADAMW)
            adamw_update(o, m->params + at, grads + at, o->m + at, o->v + at, n, lr, decay, bias1,
                         bias2);
        else
            sgd_update(m->params + at, grads + at, n, lr, decay);
    }
}

/* Sums of squares are taken over fixed chunks (in parallel), then the chunk sums are
 * added in order: the grouping does not depend on how many threads ran. */
enum { NORM_CHUNK = 1 << 14 };

double grad_global_norm(const float *grads, size_t n)
{
    size_t chunks = (n + NORM_CHUNK - 1) / NORM_CHUNK;
    double *partial = malloc((chunks ? chunks : 1) * sizeof(double));
    if (!partial)
        return NAN;
#pragma omp parallel for schedule(static)
    for (size_t c = 0; c < chunks; c++) {
        size_t end = (c + 1) * NORM_CHUNK < n ? (c + 1) * NORM_CHUNK : n;
        double sum = 0.0;
        for (size_t i = c * NORM_CHUNK; i < end; i++)
            sum += (double)grads[i] * grads[i];
        partial[c] = sum;
    }
    double total = 0.0;
    for (size_t c = 0; c < chunks; c++)
        total += partial[c];
    free(partial);
    return sqrt(total);
}

void grad_clip(float *grads, size_t n, double norm, float max_norm)
{
    if (max_norm <= 0.0f || !(norm > max_norm))
        return;
    float scale = (float)(max_norm / norm);
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++)
        grads[i] *= scale;
}

float lr_schedule(int step, float lr, float min_lr, int warmup, int decay_steps)
{
    if (step < warmup)
        return lr * (float)(step + 1) / (float)(warmup + 1);
    if (step >= decay_steps)
        return min_lr;
    double progress = (double)(step - warmup) / (double)(decay_steps - warmup);
    double coefficient = 0.5 * (1.0 + cos(PI * progress)); /* 1 -> 0 */
    return (float)(min_lr + coefficient * (lr - min_lr));
}

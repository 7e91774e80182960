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
    o->hi = n;
    if (kind == OPTIMIZER_ADAMW) {
        o->m = calloc(2 * n, sizeof(float));
        if (!o->m)
            return error_set(err, "out of memory for the AdamW moments of %zu parameters", n);
        o->v = o->m + n;
    }
    return 0;
}

int optimizer_shard(Optimizer *o, size_t lo, size_t hi, Error *err)
{
    if (o->kind == OPTIMIZER_ADAMW) {
        size_t n = hi - lo;
        float *moments = malloc((n ? 2 * n : 1) * sizeof(float));
        if (!moments)
            return error_set(err, "out of memory for the AdamW moments of %zu parameters", n);
        memcpy(moments, o->m + (lo - o->lo), n * sizeof(float));
        memcpy(moments + n, o->v + (lo - o->lo), n * sizeof(float));
        free(o->m);
        o->m = moments;
        o->v = moments + n;
    }
    o->lo = lo;
    o->hi = hi;
    return 0;
}

void optimizer_free(Optimizer *o)
{
    if (!o)
        return;
    free(o->m);
    memset(o, 0, sizeof *o);
}

/* Hyperparameters of one AdamW update. */
typedef struct {
    float beta1, beta2, eps, lr, decay, grad_scale;
    float bias1, bias2; /* 1 - beta^t: Adam's correction of the zero-initialised moments */
} AdamwStep;

/* Updates are element-wise: threads take fixed chunks, and each chunk is a plain loop
 * over restrict pointers that the compiler vectorises. */
enum { UPDATE_CHUNK = 1 << 14 };

static void adamw_chunk(AdamwStep a, float *restrict p, const float *restrict grads,
                        float *restrict m, float *restrict v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float g = grads[i] * a.grad_scale;
        m[i] = a.beta1 * m[i] + (1.0f - a.beta1) * g;
        v[i] = a.beta2 * v[i] + (1.0f - a.beta2) * g * g;
        float m_hat = m[i] / a.bias1, v_hat = v[i] / a.bias2;
        p[i] -= a.lr * (m_hat / (sqrtf(v_hat) + a.eps) + a.decay * p[i]);
    }
}

static void adamw_update(AdamwStep a, float *p, const float *grads, float *m, float *v, size_t n)
{
#pragma omp parallel for schedule(static) if (n >= UPDATE_CHUNK)
    for (size_t at = 0; at < n; at += UPDATE_CHUNK) {
        size_t len = n - at < UPDATE_CHUNK ? n - at : UPDATE_CHUNK;
        adamw_chunk(a, p + at, grads + at, m + at, v + at, len);
    }
}

static void sgd_chunk(float *restrict p, const float *restrict grads, size_t n, float lr,
                      float decay, float grad_scale)
{
    for (size_t i = 0; i < n; i++)
        p[i] -= lr * (grads[i] * grad_scale + decay * p[i]);
}

static void sgd_update(float *p, const float *grads, size_t n, float lr, float decay,
                       float grad_scale)
{
#pragma omp parallel for schedule(static) if (n >= UPDATE_CHUNK)
    for (size_t at = 0; at < n; at += UPDATE_CHUNK) {
        size_t len = n - at < UPDATE_CHUNK ? n - at : UPDATE_CHUNK;
        sgd_chunk(p + at, grads + at, len, lr, decay, grad_scale);
    }
}

/* The hyperparameters of one step; `decay` is set per range. */
static AdamwStep adamw_step_of(const Optimizer *o, float grad_scale, float lr, int step)
{
    return (AdamwStep){
        .beta1 = o->beta1,
        .beta2 = o->beta2,
        .eps = o->eps,
        .lr = lr,
        .grad_scale = grad_scale,
        .bias1 = 1.0f - powf(o->beta1, (float)(step + 1)),
        .bias2 = 1.0f - powf(o->beta2, (float)(step + 1)),
    };
}

/* Updates params [begin, end), which lie inside the optimizer's [lo, hi). */
static void update_range(const Optimizer *o, AdamwStep a, float *params, const float *grads,
                         size_t begin, size_t end)
{
    if (o->kind == OPTIMIZER_ADAMW)
        adamw_update(a, params + begin, grads + begin, o->m + (begin - o->lo),
                     o->v + (begin - o->lo), end - begin);
    else
        sgd_update(params + begin, grads + begin, end - begin, a.lr, a.decay, a.grad_scale);
}

void optimizer_step(Optimizer *o, Model *m, const float *grads, float grad_scale, float lr,
                    int step)
{
    AdamwStep a = adamw_step_of(o, grad_scale, lr, step);
    for (int i = 0; i < m->n_tensors; i++) {
        const ParamTensor *t = &m->tensors[i];
        /* the tensor's part of [lo, hi) */
        size_t begin = t->offset > o->lo ? t->offset : o->lo;
        size_t end = t->offset + (size_t)t->rows * t->cols;
        end = end < o->hi ? end : o->hi;
        if (begin >= end)
            continue;
        a.decay = t->kind == PARAM_NORM ? 0.0f : o->weight_decay;
        update_range(o, a, m->params, grads, begin, end);
    }
}

void optimizer_step_flat(Optimizer *o, float *params, const float *grads, float grad_scale,
                         float lr, int step)
{
    AdamwStep a = adamw_step_of(o, grad_scale, lr, step);
    a.decay = o->weight_decay;
    update_range(o, a, params, grads, o->lo, o->hi);
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
#pragma omp simd reduction(+ : sum)
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

float grad_clip_scale(double norm, float max_norm)
{
    return max_norm > 0.0f && norm > max_norm ? (float)(max_norm / norm) : 1.0f;
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

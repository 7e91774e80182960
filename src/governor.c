#include "governor.h"

#include <omp.h>
#include <stdio.h>

#include "matmul.h"
#include "timer.h"

void governor_init(ThreadGovernor *g)
{
    int max = compute_max_threads();
    *g = (ThreadGovernor){.max_threads = max, .threads = max, .settled = max,
                          .retry_fewer_after = GOVERNOR_FIRST_RETRY_FEWER,
                          .retry_more_after = GOVERNOR_FIRST_RETRY_MORE};
}

/* The second number of /proc/thread-self/schedstat: nanoseconds this thread has spent on a
 * run queue, ready to run, while the core ran something else. */
static double thread_wait_seconds(void)
{
    FILE *fp = fopen("/proc/thread-self/schedstat", "r");
    unsigned long long on_cpu, waiting;
    int n = fp ? fscanf(fp, "%llu %llu", &on_cpu, &waiting) : 0;
    if (fp)
        fclose(fp);
    return n == 2 ? (double)waiting * 1e-9 : -1.0;
}

double governor_threads_wait_seconds(int n)
{
    double total = 0.0;
    bool known = true;
    /* each thread reads its own counter; libgomp keeps the same threads from one parallel
     * region to the next, so two readings compare the same threads */
#pragma omp parallel num_threads(n) reduction(+ : total) reduction(&& : known)
    {
        double w = thread_wait_seconds();
        known = w >= 0.0;
        total = w;
    }
    return known ? total : -1.0;
}

void governor_apply(ThreadGovernor *g)
{
    if (g->max_threads != compute_max_threads())
        governor_init(g);
    compute_limit_threads(g->threads);
}

void governor_unit_begin(ThreadGovernor *g)
{
    governor_apply(g);
    g->unit_start = timer_seconds();
    if (g->n_units == 0) {
        g->wait_start = governor_threads_wait_seconds(g->threads);
        g->window_start = g->unit_start;
    }
}

void governor_unit_end(ThreadGovernor *g, double work)
{
    double now = timer_seconds();
    g->n_units++;
    g->work += work > 0.0 ? work : 1.0;
    g->seconds += now - g->unit_start;
    double window = now - g->window_start;
    bool long_enough = window >= GOVERNOR_WINDOW_SECONDS &&
                       (g->n_units >= GOVERNOR_WINDOW_MIN_UNITS ||
                        window >= GOVERNOR_WINDOW_LONG_SECONDS);
    if (!long_enough)
        return;
    double wait_end = governor_threads_wait_seconds(g->threads);
    double wait_share = g->wait_start >= 0.0 && wait_end >= 0.0
                            ? (wait_end - g->wait_start) / (g->threads * (now - g->window_start))
                            : -1.0;
    double cost = g->seconds / g->work;
    g->n_units = 0;
    g->work = g->seconds = 0.0;
    governor_window_end(g, cost, wait_share, now);
}

static double longer_retry(double seconds)
{
    return seconds * 2 < GOVERNOR_LAST_RETRY ? seconds * 2 : GOVERNOR_LAST_RETRY;
}

/* A window at the settled count: try one thread fewer when the cores are contended, one
 * more when below the user's count, each no sooner than its retry time. */
static void settled_window_end(ThreadGovernor *g, double cost, double wait_share, double now)
{
    g->settled_cost = cost;
    g->tried_windows = 0;
    if (g->settled > 1 && wait_share >= GOVERNOR_WAIT_SHARE && now >= g->retry_fewer_at)
        g->threads = g->settled - 1;
    else if (g->settled < g->max_threads && now >= g->retry_more_at)
        g->threads = g->settled + 1;
}

/* A window at a tried count: fewer threads win unless slower by the margin, more threads
 * must be faster by it (governor.h says why). A loss of fewer threads while they were kept
 * from their cores gets another window; otherwise the settled count goes on, and the
 * direction waits before it is tried again, twice as long after each loss. */
static void tried_window_end(ThreadGovernor *g, double cost, double wait_share, double now)
{
    bool fewer = g->threads < g->settled;
    if (cost < g->settled_cost * (fewer ? 1.0 + GOVERNOR_MARGIN : 1.0 - GOVERNOR_MARGIN)) {
        g->settled = g->threads;
        g->settled_cost = cost;
        g->changes++;
        g->retry_fewer_after = GOVERNOR_FIRST_RETRY_FEWER;
        g->retry_more_after = GOVERNOR_FIRST_RETRY_MORE;
        /* the way back is tried after a while, not at once */
        double *back_at = fewer ? &g->retry_more_at : &g->retry_fewer_at;
        *back_at = now + (fewer ? GOVERNOR_FIRST_RETRY_MORE : GOVERNOR_FIRST_RETRY_FEWER);
        return;
    }
    if (fewer && wait_share >= GOVERNOR_WAIT_SHARE &&
        ++g->tried_windows < GOVERNOR_UNFAIR_WINDOWS)
        return;
    double *at = fewer ? &g->retry_fewer_at : &g->retry_more_at;
    double *after = fewer ? &g->retry_fewer_after : &g->retry_more_after;
    *at = now + *after;
    *after = longer_retry(*after);
    g->threads = g->settled;
}

void governor_window_end(ThreadGovernor *g, double cost, double wait_share, double now)
{
    if (g->threads == g->settled)
        settled_window_end(g, cost, wait_share, now);
    else
        tried_window_end(g, cost, wait_share, now);
}

/* The thread governor: how many of the user's threads the next unit of work runs on.
 *
 * quill's parallel loops end at barriers, where every thread waits for the slowest. When
 * another program takes a core (a compile, a browser, a second model), one of quill's
 * threads is often not running at all, and each barrier waits until the scheduler gives it
 * a core again. Measured on 2 vCPUs beside one busy process: decoding on 2 threads fell to
 * 0.37x of one thread's speed, training to 0.16x. Results do not depend on the thread count
 * (the tests check it bit for bit), so the count is free to change between units of work,
 * and the governor keeps the count that runs fastest, by measuring:
 *
 *  - It measures in windows of a few units (decoding steps, training steps): the seconds per
 *    work item (token) over the window, and how long its threads stood ready to run while
 *    another program had their core: the run-queue wait Linux counts for every thread
 *    (/proc/thread-self/schedstat). The mean, not the median: a barrier that waits 40 ms
 *    for a core is what makes the threads slow, and it counts.
 *  - When the threads waited for a core for GOVERNOR_WAIT_SHARE of a window or more, the
 *    cores are contended: the next window tries one thread fewer, and it stays there unless
 *    that is slower by more than GOVERNOR_MARGIN. Beside a busy program most windows on
 *    all the threads lose little, but one barrier that waits for a core costs tens of
 *    milliseconds, so a short window says little about them; one thread fewer is steadier,
 *    and under contention a tie goes to it. One thread more, tried below the user's count,
 *    must be faster by GOVERNOR_MARGIN to stay. A count of fewer threads that loses while
 *    its own threads waited for a core too was not measured fairly: the scheduler had not
 *    yet moved the busy program off the core that the remaining thread shares with it (that
 *    takes it some milliseconds). It gets another window, up to GOVERNOR_UNFAIR_WINDOWS in
 *    all. More threads that wait for a core have measured just what they were tried for,
 *    and a window of them beside a busy program is the slow one: they get no second window
 *    (a fine-tuning step lasts seconds). A count that loses waits before it is tried
 *    again, twice as long after each loss, up to GOVERNOR_LAST_RETRY.
 *  - Fewer threads are tried again after GOVERNOR_FIRST_RETRY_FEWER, which is short: a
 *    generation of 64 tokens lasts half a second, and a try costs one window at a slower
 *    count. More threads are tried after GOVERNOR_FIRST_RETRY_MORE, longer: beside a busy
 *    program one window on too many threads costs tens of milliseconds. So it comes back
 *    once the other program has finished.
 *
 * On a quiet machine the threads never wait for a core, nothing is tried and nothing
 * changes. Where the run-queue wait cannot be read (not Linux), the governor never goes
 * below the user's count. The decisions are plain functions of the measurements
 * (governor_window_end), so tests can feed them made-up windows. */
#ifndef QUILL_GOVERNOR_H
#define QUILL_GOVERNOR_H

#include <stdbool.h>

#define GOVERNOR_WAIT_SHARE 0.10      /* contended: threads waited this share of the window */
#define GOVERNOR_MARGIN 0.05          /* fewer threads win below (1 + this) x the settled
                                         cost, more threads below (1 - this) x */
#define GOVERNOR_WINDOW_SECONDS 0.03  /* a window lasts at least this long ... */
#define GOVERNOR_WINDOW_MIN_UNITS 3   /* ... and holds at least this many units ... */
#define GOVERNOR_WINDOW_LONG_SECONDS 1.0 /* ... or lasts this long: one LoRA step of the bench
                                            model (2.5 s) is a measurement of its own */
#define GOVERNOR_FIRST_RETRY_FEWER 0.25 /* seconds before fewer threads are tried again */
#define GOVERNOR_FIRST_RETRY_MORE 1.0   /* seconds before more threads are tried again */
#define GOVERNOR_LAST_RETRY 32.0        /* the longest wait before a retry */
#define GOVERNOR_UNFAIR_WINDOWS 3       /* windows a tried count gets while kept from cores */

typedef struct {
    int max_threads;     /* the user's count: never more */
    int threads;         /* what the current window runs on */
    int settled;         /* the count that won the last comparison */
    double settled_cost; /* its seconds per work item in its latest window (0: none yet) */
    /* the window being measured */
    int n_units;
    double work, seconds;            /* its work items and their seconds so far */
    double window_start, wait_start; /* wall clock; the threads' run-queue wait (-1: unknown) */
    double unit_start;
    /* when each direction may be tried again, and the wait after its next loss */
    double retry_fewer_at, retry_fewer_after;
    double retry_more_at, retry_more_after;
    int tried_windows;   /* windows the tried count has had so far */
    int changes;         /* how often `settled` changed */
} ThreadGovernor;

/* Starts at the count compute_set_threads set (matmul.h: the user's --threads, or every
 * core), and starts again from it whenever that setting changes. */
void governor_init(ThreadGovernor *g);

/* Brackets one unit of `work` items (a decoding step of B tokens, a training step): begin
 * sets the threads the unit runs on; end measures it and may choose another count for the
 * next window. */
void governor_unit_begin(ThreadGovernor *g);
void governor_unit_end(ThreadGovernor *g, double work);

/* Work that is not measured (a prompt, an evaluation) runs on the current count. */
void governor_apply(ThreadGovernor *g);

/* The decision at the end of a window: its cost (seconds per work item), the share of its
 * time the threads waited for a core (negative: unknown), and the clock. Sets g->threads
 * for the next window. */
void governor_window_end(ThreadGovernor *g, double cost, double wait_share, double now);

/* Seconds the current team's threads (n of them) have spent ready to run without a core,
 * summed; -1 where Linux's per-thread counters cannot be read. */
double governor_threads_wait_seconds(int n);

#endif

/* The thread governor's decisions (src/governor.h), fed made-up windows whose outcome is
 * worked out by hand from the rules in the header: a contended window tries one thread
 * fewer, a tried count wins by the margin or waits twice as long (1, 2, 4 ... 32 s for more
 * threads, from 0.25 s for fewer) before it is tried again, unless its own threads were
 * kept from their cores, and a quiet machine never changes anything. */
#include <criterion/criterion.h>
#include <time.h>

#include "governor.h"
#include "matmul.h"

/* A governor over 2 threads, as on the 2-vCPU machine. */
static ThreadGovernor two_threads(void)
{
    compute_set_threads(2);
    ThreadGovernor g;
    governor_init(&g);
    return g;
}

Test(governor, a_quiet_machine_keeps_every_thread)
{
    ThreadGovernor g = two_threads();
    for (int w = 0; w < 1000; w++) {
        governor_window_end(&g, 0.004, 0.01, w * 0.03);
        cr_assert_eq(g.threads, 2, "window %d", w);
    }
    cr_assert_eq(g.changes, 0);
}

Test(governor, unknown_waits_never_take_a_thread_away)
{
    ThreadGovernor g = two_threads();
    for (int w = 0; w < 100; w++)
        governor_window_end(&g, 0.004, -1.0, w * 0.03);
    cr_assert_eq(g.threads, 2);
}

Test(governor, contended_cores_move_to_fewer_threads_when_faster)
{
    ThreadGovernor g = two_threads();
    governor_window_end(&g, 0.020, 0.45, 0.0); /* threads waited 45% of the window */
    cr_assert_eq(g.threads, 1, "a contended window tries one thread fewer");
    governor_window_end(&g, 0.008, 0.0, 0.05); /* and 1 thread runs 2.5x faster */
    cr_assert_eq(g.settled, 1);
    cr_assert_eq(g.threads, 1);
    cr_assert_eq(g.changes, 1);
    /* 2 threads are tried again 1 s after the change, not before */
    governor_window_end(&g, 0.008, 0.0, 0.9);
    cr_assert_eq(g.threads, 1);
    governor_window_end(&g, 0.008, 0.0, 1.06);
    cr_assert_eq(g.threads, 2);
}

/* Under contention a tie goes to fewer threads: they stay unless 5% slower. */
Test(governor, fewer_threads_stay_unless_slower_by_the_margin)
{
    ThreadGovernor g = two_threads();
    governor_window_end(&g, 0.0100, 0.30, 0.0);
    cr_assert_eq(g.threads, 1);
    governor_window_end(&g, 0.0104, 0.0, 0.05); /* 4% slower: within the margin, kept */
    cr_assert_eq(g.settled, 1);

    g = two_threads();
    governor_window_end(&g, 0.0100, 0.30, 0.0);
    governor_window_end(&g, 0.0106, 0.0, 0.1); /* 6% slower: back to 2 threads */
    cr_assert_eq(g.settled, 2);
    cr_assert_eq(g.threads, 2);
    /* the way down waits 0.25 s now, even though the threads still wait for cores */
    governor_window_end(&g, 0.0100, 0.30, 0.3);
    cr_assert_eq(g.threads, 2);
    governor_window_end(&g, 0.0100, 0.30, 0.4);
    cr_assert_eq(g.threads, 1);
    /* and 0.5 s after a second clean loss */
    governor_window_end(&g, 0.0106, 0.0, 0.4);
    governor_window_end(&g, 0.0100, 0.30, 0.85);
    cr_assert_eq(g.threads, 2);
    governor_window_end(&g, 0.0100, 0.30, 0.95);
    cr_assert_eq(g.threads, 1);
}

/* One thread more must be 5% faster to stay. */
Test(governor, more_threads_must_win_by_the_margin)
{
    ThreadGovernor g = two_threads();
    governor_window_end(&g, 0.020, 0.5, 0.0);
    governor_window_end(&g, 0.008, 0.0, 0.0); /* settled on 1 thread */
    governor_window_end(&g, 0.008, 0.0, 1.0);
    cr_assert_eq(g.threads, 2);
    governor_window_end(&g, 0.0078, 0.0, 1.05); /* 2.5% faster: not enough */
    cr_assert_eq(g.settled, 1);
    cr_assert_eq(g.threads, 1);
}

/* Beside a busy program, the one thread left may share its core with it for a while, until
 * the scheduler moves one of them: a try that loses while its thread waited for a core gets
 * another window, up to 3 windows in all; a try that keeps losing so goes back and waits. */
Test(governor, a_tried_count_kept_from_its_core_gets_more_windows)
{
    ThreadGovernor g = two_threads();
    governor_window_end(&g, 0.0090, 0.25, 0.0);
    cr_assert_eq(g.threads, 1);
    governor_window_end(&g, 0.0100, 0.26, 0.03); /* 1 thread waited too, and lost */
    cr_assert_eq(g.threads, 1, "a try kept from its core gets another window");
    governor_window_end(&g, 0.0068, 0.0, 0.06); /* and then wins */
    cr_assert_eq(g.settled, 1);

    g = two_threads();
    governor_window_end(&g, 0.0090, 0.25, 0.0);
    for (int w = 0; w < 3; w++) {
        cr_assert_eq(g.threads, 1, "window %d of the try", w);
        governor_window_end(&g, 0.0100, 0.26, 0.03 * (w + 1));
    }
    cr_assert_eq(g.threads, 2, "three unfair losses end the try");
    cr_assert_eq(g.settled, 2);
    governor_window_end(&g, 0.0090, 0.25, 0.2);
    cr_assert_eq(g.threads, 2, "and the way down waits 0.25 s");
    governor_window_end(&g, 0.0090, 0.25, 0.4);
    cr_assert_eq(g.threads, 1);
}

/* Settled on 1 thread beside a busy program: a try of 2 threads waits for a core (the busy
 * program holds one) and loses; that is the measurement it was for, so the next window is
 * back on 1 thread, not another slow one (a fine-tuning step lasts seconds). */
Test(governor, more_threads_kept_from_a_core_lose_in_one_window)
{
    ThreadGovernor g = two_threads();
    governor_window_end(&g, 0.020, 0.5, 0.0);
    governor_window_end(&g, 0.008, 0.0, 0.0); /* settled on 1 thread */
    governor_window_end(&g, 0.008, 0.0, 1.0);
    cr_assert_eq(g.threads, 2, "2 threads are tried after 1 s");
    governor_window_end(&g, 0.012, 0.3, 3.5); /* slower, waiting for a core */
    cr_assert_eq(g.threads, 1, "the losing try ends at once");
    cr_assert_eq(g.settled, 1);
}

/* Settled on 1 thread beside a busy neighbour that never leaves: every retry of 2 threads
 * loses, and the waits between retries double from 1 s to at most 32 s. */
Test(governor, losing_retries_wait_twice_as_long_up_to_32_seconds)
{
    ThreadGovernor g = two_threads();
    governor_window_end(&g, 0.020, 0.5, 0.0);
    governor_window_end(&g, 0.008, 0.0, 0.0); /* settled on 1 thread at t = 0 */
    double expected_gaps[] = {1, 1, 2, 4, 8, 16, 32, 32, 32};
    int n_gaps = sizeof expected_gaps / sizeof *expected_gaps, compared = 0;
    double now = 0.0, last_try = 0.0;
    for (int tried = 0; tried < n_gaps;) {
        now += 0.01;
        governor_window_end(&g, 0.008, 0.0, now);
        if (g.threads != 2)
            continue;
        cr_assert_float_eq(now - last_try, expected_gaps[tried], 0.011, "retry %d after %g s",
                           tried, now - last_try);
        compared++;
        last_try = now;
        governor_window_end(&g, 0.020, 0.0, now); /* 2 threads lose again, fairly */
        cr_assert_eq(g.threads, 1);
        tried++;
    }
    cr_assert_eq(compared, n_gaps);
    cr_assert_eq(g.changes, 1);
}

Test(governor, the_extra_thread_comes_back_when_the_neighbour_leaves)
{
    ThreadGovernor g = two_threads();
    governor_window_end(&g, 0.020, 0.5, 0.0);
    governor_window_end(&g, 0.008, 0.0, 0.0);
    governor_window_end(&g, 0.008, 0.0, 1.5); /* tries 2 threads */
    cr_assert_eq(g.threads, 2);
    governor_window_end(&g, 0.0045, 0.01, 1.6); /* the cores are free again */
    cr_assert_eq(g.settled, 2);
    cr_assert_eq(g.changes, 2);
    for (int w = 0; w < 100; w++)
        governor_window_end(&g, 0.0045, 0.01, 2.0 + w);
    cr_assert_eq(g.threads, 2);
}

Test(governor, one_thread_has_nothing_to_change)
{
    compute_set_threads(1);
    ThreadGovernor g;
    governor_init(&g);
    for (int w = 0; w < 100; w++)
        governor_window_end(&g, 0.01, 0.9, w * 2.0);
    cr_assert_eq(g.threads, 1);
    cr_assert_eq(g.changes, 0);
}

Test(governor, a_new_thread_setting_starts_it_again)
{
    ThreadGovernor g = two_threads();
    governor_window_end(&g, 0.020, 0.5, 0.0);
    governor_window_end(&g, 0.008, 0.0, 0.0);
    cr_assert_eq(g.settled, 1);
    compute_set_threads(3);
    governor_apply(&g);
    cr_assert_eq(g.threads, 3);
    cr_assert_eq(compute_threads(), 3);
    compute_set_threads(0);
}

/* A window holds 3 units, or fewer once it has lasted GOVERNOR_WINDOW_LONG_SECONDS: one
 * unit that long (a fine-tuning step) ends it, a short one does not. */
Test(governor, one_unit_of_a_second_is_a_window, .timeout = 30)
{
    ThreadGovernor g = two_threads();
    governor_unit_begin(&g);
    governor_unit_end(&g, 1024);
    cr_assert_eq(g.n_units, 1, "a short unit alone is no window");
    g = two_threads();
    governor_unit_begin(&g);
    struct timespec pause = {.tv_sec = (time_t)GOVERNOR_WINDOW_LONG_SECONDS,
                             .tv_nsec = 50 * 1000 * 1000};
    nanosleep(&pause, NULL);
    governor_unit_end(&g, 1024);
    cr_assert_eq(g.n_units, 0, "a unit of %g s is a window of its own",
                 GOVERNOR_WINDOW_LONG_SECONDS);
    compute_set_threads(0);
}

/* Linux counts each thread's run-queue wait; the governor reads it for the whole team. */
Test(governor, the_threads_wait_is_readable_and_grows)
{
    double first = governor_threads_wait_seconds(2);
    cr_assert_geq(first, 0.0, "/proc/thread-self/schedstat could not be read");
    cr_assert_geq(governor_threads_wait_seconds(2), first);
}

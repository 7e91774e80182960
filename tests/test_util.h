/* Helpers shared by the Criterion tests. */
#ifndef QUILL_TEST_UTIL_H
#define QUILL_TEST_UTIL_H

#include <criterion/criterion.h>
#include <stdbool.h>
#include <stddef.h>

/* Path of a file under ../shared (or $QUILL_SHARED), in one of 8 static buffers used in
 * turn, or NULL when the file is missing. */
const char *test_shared_path(const char *relative);

/* True in CI (CI=true), where tests that need ../shared must fail instead of skipping. */
bool test_in_ci(void);

/* Sets `var` to the path of a file under ../shared; when it is missing, fails the test in
 * CI and skips it elsewhere, with a message naming the file. */
#define SHARED_FILE_OR_SKIP(var, relative)                                                        \
    const char *var = test_shared_path(relative);                                              \
    do {                                                                                        \
        if (!var) {                                                                             \
            if (test_in_ci())                                                                   \
                cr_assert_fail("../shared/%s is missing (CI needs ../shared beside the checkout)",   \
                         relative);                                                             \
            cr_skip_test("../shared/%s is missing: test skipped", relative);                   \
        }                                                                                       \
    } while (0)

/* Writes dir/corpus.txt, about 40 KB of sentences drawn from 16 words by a fixed-seed
 * generator, and returns its path (static buffer). */
const char *test_write_corpus(const char *dir);

/* A fresh empty directory under /tmp, in a static buffer. */
const char *test_make_tmpdir(void);

/* Path of the quill binary under test ($QUILL_BIN, set by `make test`, or bin/quill). */
const char *test_quill_bin(void);

/* Runs a shell command, captures its stdout+stderr (malloc'd, NUL-terminated) and returns
 * its exit status (the code, or 128+signal when killed). */
int test_run_capture(const char *command, char **output);

/* Runs `quill ARGS`, the binary under test, with ARGS formatted from fmt; returns the exit
 * status and the output (stdout and stderr, malloc'd). */
int quill(char **output, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Expects `quill ARGS` to succeed. */
void quill_ok(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Expects `quill ARGS` to exit with status 1 and to end with exactly one line starting
 * "quill: error:" that contains needle. */
void expect_clean_error(const char *needle, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif

/* Atomic file replacement: a writer that dies before committing leaves the old file whole. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fileio.h"
#include "test_util.h"

static char *read_text(const char *path)
{
    char *text;
    size_t len;
    Error err;
    cr_assert_eq(file_read_all(path, &text, &len, &err), 0, "%s", err.msg);
    return text;
}

Test(fileio, writer_killed_before_commit_leaves_the_old_file)
{
    char path[256], tmp[300];
    snprintf(path, sizeof path, "%s/checkpoint", test_make_tmpdir());
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    Error err;
    cr_assert_eq(file_write_atomic(path, "old and complete", 16, &err), 0, "%s", err.msg);
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) { /* a writer that dies half-way, as if killed */
        AtomicFile af;
        if (atomic_file_open(&af, path, &err) == 0) {
            fputs("new but only ha", af.fp);
            fflush(af.fp);
        }
        _exit(0);
    }
    waitpid(pid, NULL, 0);
    char *text = read_text(path);
    cr_expect_str_eq(text, "old and complete");
    free(text);
    /* the next writer overwrites the leftover and commits */
    cr_assert_eq(file_write_atomic(path, "new", 3, &err), 0, "%s", err.msg);
    text = read_text(path);
    cr_expect_str_eq(text, "new");
    free(text);
    cr_expect_neq(access(tmp, F_OK), 0, "the temporary file is gone after a commit");
}

Test(fileio, abort_keeps_the_old_file_and_removes_the_temporary)
{
    char path[256], tmp[300];
    snprintf(path, sizeof path, "%s/file", test_make_tmpdir());
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    Error err;
    cr_assert_eq(file_write_atomic(path, "kept", 4, &err), 0);
    AtomicFile af;
    cr_assert_eq(atomic_file_open(&af, path, &err), 0);
    fputs("discarded", af.fp);
    atomic_file_abort(&af);
    char *text = read_text(path);
    cr_expect_str_eq(text, "kept");
    free(text);
    cr_expect_neq(access(tmp, F_OK), 0);
}

Test(fileio, fnv1a64_known_values)
{
    /* published FNV-1a 64-bit test vectors */
    cr_expect_eq(fnv1a64(FNV1A64_INIT, "", 0), 0xcbf29ce484222325ULL);
    cr_expect_eq(fnv1a64(FNV1A64_INIT, "a", 1), 0xaf63dc4c8601ec8cULL);
    cr_expect_eq(fnv1a64(FNV1A64_INIT, "foobar", 6), 0x85944171f73967e8ULL);
}

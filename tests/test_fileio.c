/* Atomic file replacement: a writer that dies before committing leaves the old file whole. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "buffer.h"
#include "fileio.h"
#include "hash.h"
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

/* The published XXH3-64 values (xxHash's own test vectors) for the empty input and for a
 * buffer long enough to take the library's bulk path; the stream gives the same values in
 * pieces. */
Test(hash, xxh3_matches_published_values_in_one_piece_and_in_pieces)
{
    cr_expect_eq(hash64("", 0), 0x2D06800538D394C2ULL);
    unsigned char bytes[2048];
    /* xxHash's sanity buffer: a byte generator seeded with the prime 2654435761 */
    uint64_t gen = 2654435761U;
    for (size_t i = 0; i < sizeof bytes; i++) {
        bytes[i] = (unsigned char)(gen >> 56);
        gen *= 11400714785074694797ULL;
    }
    cr_expect_eq(hash64(bytes, 1), 0xC44BDFF4074EECDBULL);
    cr_expect_eq(hash64(bytes, 6), 0x27B56A84CD2D7325ULL);
    cr_expect_eq(hash64(bytes, 2048), 0xDD59E2C3A5F038E0ULL);
    Hash64Stream *s = hash64_stream_new();
    cr_assert_not_null(s);
    hash64_stream_add(s, bytes, 1000);
    hash64_stream_add(s, bytes + 1000, 1048);
    cr_expect_eq(hash64_stream_value(s), hash64(bytes, 2048));
    hash64_stream_free(s);
}

/* buffer_reserve: capacities by hand (64 doubled until the need fits), contents kept. */
Test(buffer, reserve_doubles_from_the_first_capacity_and_keeps_the_contents)
{
    char *data = NULL;
    size_t cap = 0;
    Error err;
    cr_assert_eq(buffer_reserve(&data, &cap, 10, 64, "test bytes", &err), 0, "%s", err.msg);
    cr_expect_eq(cap, 64);
    memcpy(data, "0123456789", 10);
    cr_assert_eq(buffer_reserve(&data, &cap, 64, 64, "test bytes", &err), 0, "%s", err.msg);
    cr_expect_eq(cap, 64, "a need that fits leaves the buffer alone");
    cr_assert_eq(buffer_reserve(&data, &cap, 200, 64, "test bytes", &err), 0, "%s", err.msg);
    cr_expect_eq(cap, 256, "64 -> 128 -> 256");
    cr_expect_arr_eq(data, "0123456789", 10);
    free(data);
}

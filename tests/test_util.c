#include "test_util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

const char *test_shared_path(const char *relative)
{
    /* a few buffers in turn, so that a test can hold several paths at once */
    static char paths[8][4096];
    static int next;
    char *path = paths[next++ % 8];
    const char *root = getenv("QUILL_SHARED");
    snprintf(path, sizeof paths[0], "%s/%s", root && *root ? root : "../shared", relative);
    struct stat st;
    return stat(path, &st) == 0 ? path : NULL;
}

bool test_in_ci(void)
{
    const char *ci = getenv("CI");
    return ci && strcmp(ci, "true") == 0;
}

const char *test_write_corpus(const char *dir)
{
    static char path[512];
    static const char *words[] = {"the", "cat", "sat", "on", "a", "mat", "and", "then",
                                  "ran", "to", "see", "dog", "who", "was", "very", "glad"};
    snprintf(path, sizeof path, "%s/corpus.txt", dir);
    FILE *fp = fopen(path, "w");
    cr_assert_not_null(fp, "cannot write %s", path);
    unsigned state = 777;
    for (int i = 0; i < 9000; i++) {
        state = state * 1103515245u + 12345u; /* the C standard's example generator */
        fprintf(fp, "%s%s", words[(state >> 16) % 16], (state >> 8) % 9 == 0 ? ".\n" : " ");
    }
    fclose(fp);
    return path;
}

const char *test_make_tmpdir(void)
{
    static char dir[64];
    snprintf(dir, sizeof dir, "/tmp/quill-test-XXXXXX");
    cr_assert_not_null(mkdtemp(dir), "mkdtemp failed");
    return dir;
}

const char *test_quill_bin(void)
{
    const char *bin = getenv("QUILL_BIN");
    return bin && *bin ? bin : "bin/quill";
}

int test_run_capture(const char *command, char **output)
{
    char *full = NULL;
    size_t full_len = strlen(command) + 16;
    full = malloc(full_len);
    cr_assert_not_null(full);
    snprintf(full, full_len, "%s 2>&1", command);
    FILE *p = popen(full, "r");
    free(full);
    cr_assert_not_null(p, "popen failed for: %s", command);
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    size_t got;
    while ((got = fread(buf + n, 1, cap - n - 1, p)) > 0) {
        n += got;
        if (cap - n - 1 == 0)
            buf = realloc(buf, cap *= 2);
    }
    buf[n] = '\0';
    int status = pclose(p);
    *output = buf;
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

/* Runs `quill ARGS` with ARGS formatted from fmt into args (kept for messages); returns
 * the exit status and the output. */
static int quill_args(char **output, char *args, size_t cap, const char *fmt, va_list ap)
{
    char command[2300];
    vsnprintf(args, cap, fmt, ap);
    snprintf(command, sizeof command, "%s %s", test_quill_bin(), args);
    return test_run_capture(command, output);
}

int quill(char **output, const char *fmt, ...)
{
    char args[2048];
    va_list ap;
    va_start(ap, fmt);
    int status = quill_args(output, args, sizeof args, fmt, ap);
    va_end(ap);
    return status;
}

void quill_ok(const char *fmt, ...)
{
    char args[2048], *out;
    va_list ap;
    va_start(ap, fmt);
    int status = quill_args(&out, args, sizeof args, fmt, ap);
    va_end(ap);
    cr_assert_eq(status, 0, "quill %s failed (%d):\n%s", args, status, out);
    free(out);
}

void expect_clean_error(const char *needle, const char *fmt, ...)
{
    char args[2048], *out;
    va_list ap;
    va_start(ap, fmt);
    int status = quill_args(&out, args, sizeof args, fmt, ap);
    va_end(ap);
    cr_expect_eq(status, 1, "quill %s: exit %d (want 1):\n%s", args, status, out);
    const char *line = strstr(out, "quill: error: ");
    cr_expect_not_null(line, "quill %s: no error line:\n%s", args, out);
    if (line) {
        const char *end = strchr(line, '\n');
        cr_expect(end && end[1] == '\0', "quill %s: the error is not one last line:\n%s", args, out);
        cr_expect_not_null(strstr(line, needle), "quill %s: '%s' not in:\n%s", args, needle, out);
    }
    free(out);
}

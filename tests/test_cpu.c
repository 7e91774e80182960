/* The CPU features quill reports (src/cpu.c) against the operating system's own list in
 * /proc/cpuinfo and the compiler's predefined macros, and the OpenBLAS kernel the library
 * loads for this CPU, as the quill binary reports it. */
#include <criterion/criterion.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "cpu.h"
#include "matmul.h"
#include "test_util.h"

/* The first "flags" line of /proc/cpuinfo (malloc'd). */
static char *cpuinfo_flags(void)
{
    char *flags = NULL;
    cr_assert_eq(test_run_capture("grep -m1 '^flags' /proc/cpuinfo", &flags), 0);
    return flags;
}

/* Whether a flags line lists `flag` (a whole word). */
static bool cpuinfo_has(const char *flags, const char *flag)
{
    size_t len = strlen(flag);
    for (const char *p = strstr(flags, flag); p; p = strstr(p + 1, flag))
        if (p[-1] == ' ' && (p[len] == ' ' || p[len] == '\n'))
            return true;
    return false;
}

/* The kernel this CPU should run, from the flags the kernel reports (outside quill's own
 * CPUID reading): Cooperlake with AVX-512 F/BW/VL/DQ/CD and BF16, SkylakeX without BF16,
 * Haswell with AVX2 + FMA; NULL below that. */
static const char *expected_kernel(void)
{
    char *cpuinfo = cpuinfo_flags();
    const char *avx512[] = {"avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512cd"};
    bool has_avx512 = true;
    for (int i = 0; i < 5; i++)
        has_avx512 = has_avx512 && cpuinfo_has(cpuinfo, avx512[i]);
    bool has_avx2_fma = cpuinfo_has(cpuinfo, "avx2") && cpuinfo_has(cpuinfo, "fma");
    const char *kernel = !has_avx512 ? (has_avx2_fma ? "Haswell" : NULL)
                         : cpuinfo_has(cpuinfo, "avx512_bf16") ? "Cooperlake"
                                                               : "SkylakeX";
    free(cpuinfo);
    return kernel;
}

/* The matmul backend the quill binary reports when `quill train` starts, run under the
 * environment assignments `env` (for env(1)). */
static char *binary_matmul_backend(const char *env)
{
    const char *dir = test_make_tmpdir();
    const char *corpus = test_write_corpus(dir);
    char command[1024], *output = NULL;
    snprintf(command, sizeof command,
             "env %s %s train --config configs/tiny.json --data %s --out %s/run --steps 0", env,
             test_quill_bin(), corpus, dir);
    cr_assert_eq(test_run_capture(command, &output), 0, "%s", output);
    char *line = strstr(output, "matmul: ");
    cr_assert_not_null(line, "no matmul line in: %s", output);
    char *backend = strndup(line + strlen("matmul: "), strcspn(line, "\n") - strlen("matmul: "));
    free(output);
    return backend;
}

/* Runs the binary under `env` and expects its backend to contain `expected_format` with
 * this CPU's kernel in it; skipped on a CPU without AVX2 (OpenBLAS's own choice stands). */
static void expect_backend(const char *env, const char *expected_format)
{
    const char *kernel = expected_kernel();
    if (!kernel)
        cr_skip_test("this CPU has no AVX2: OpenBLAS's own choice stands");
    char *backend = binary_matmul_backend(env), expected[160];
    snprintf(expected, sizeof expected, expected_format, kernel);
    cr_expect(strstr(backend, expected), "backend '%s', expected %s", backend, expected);
    free(backend);
}

/* OpenBLAS is loaded by the library itself, with this CPU's kernel when the user did not
 * choose one: no re-execution of the process, which a host program could not allow. */
Test(cpu, blas_kernel_is_chosen_for_this_cpu_in_process)
{
    expect_backend("-u OPENBLAS_CORETYPE", "(%s kernel)");
}

/* A kernel the user set is kept, and the weaker choice is said. */
Test(cpu, blas_kernel_set_by_the_user_is_kept)
{
    expect_backend("OPENBLAS_CORETYPE=Sandybridge",
                   "(Sandybridge kernel, set by OPENBLAS_CORETYPE=Sandybridge; this CPU runs %s)");
}

/* quill's names and /proc/cpuinfo's for the same features, in quill's order. */
static const struct {
    const char *name, *cpuinfo, *macro;
} FEATURES[] = {
    {"AVX-512F", "avx512f", "__AVX512F__"},
    {"AVX-512BW", "avx512bw", "__AVX512BW__"},
    {"AVX-512DQ", "avx512dq", "__AVX512DQ__"},
    {"AVX-512VL", "avx512vl", "__AVX512VL__"},
    {"AVX-512CD", "avx512cd", "__AVX512CD__"},
    {"AVX-512VNNI", "avx512_vnni", "__AVX512VNNI__"},
    {"AVX-512BF16", "avx512_bf16", "__AVX512BF16__"},
    {"AVX2", "avx2", "__AVX2__"},
    {"AVX", "avx", "__AVX__"},
    {"FMA", "fma", "__FMA__"},
    {"F16C", "f16c", "__F16C__"},
};
enum { N_FEATURES = sizeof FEATURES / sizeof *FEATURES };

/* Appends `name` to a space-separated list. */
static void list_add(char *list, size_t cap, const char *name)
{
    size_t len = strlen(list);
    snprintf(list + len, cap - len, "%s%s", len ? " " : "", name);
}

Test(cpu, reported_features_match_proc_cpuinfo)
{
    char *flags = cpuinfo_flags(), expected[256] = "";
    for (int i = 0; i < N_FEATURES; i++)
        if (cpuinfo_has(flags, FEATURES[i].cpuinfo))
            list_add(expected, sizeof expected, FEATURES[i].name);
    cr_expect_str_eq(cpu_features_reported(), expected[0] ? expected : "none",
                     "/proc/cpuinfo: %s", flags);
    free(flags);
}

/* The Makefile compiles with -march=native: the compiler's own macros for that say which
 * features the build was allowed to use. */
Test(cpu, compiled_features_match_the_compiler)
{
    char *macros = NULL, expected[256] = "";
    cr_assert_eq(test_run_capture("gcc -march=native -dM -E - </dev/null", &macros), 0);
    for (int i = 0; i < N_FEATURES; i++) {
        char define[64];
        snprintf(define, sizeof define, "#define %s 1\n", FEATURES[i].macro);
        if (strstr(macros, define))
            list_add(expected, sizeof expected, FEATURES[i].name);
    }
    cr_expect_str_eq(cpu_features_compiled(), expected[0] ? expected : "none");
    free(macros);
}


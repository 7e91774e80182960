/* The test runner: Criterion's own main, preceded by the same OpenBLAS kernel choice the
 * quill binary makes (see gemm_blas_coretype_advice), so tests exercise the fast path that
 * users run. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <unistd.h>

#include "matmul.h"

int main(int argc, char *argv[])
{
    const char *core = getenv("OPENBLAS_CORETYPE") ? NULL : gemm_blas_coretype_advice();
    if (core) {
        setenv("OPENBLAS_CORETYPE", core, 1);
        execv("/proc/self/exe", argv);
    }
    struct criterion_test_set *tests = criterion_initialize();
    int result = 0;
    if (criterion_handle_args(argc, argv, true))
        result = !criterion_run_all_tests(tests);
    criterion_finalize(tests);
    return result;
}

#include "cpu.h"

#include <cpuid.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "matmul.h"

/* The features, widest first, by the names a user knows them. */
typedef enum {
    AVX512F, AVX512BW, AVX512DQ, AVX512VL, AVX512CD, AVX512VNNI, AVX512BF16, AVX2, AVX, FMA,
    F16C, N_FEATURES
} Feature;
static const char *const FEATURE_NAMES[N_FEATURES] = {
    "AVX-512F", "AVX-512BW", "AVX-512DQ", "AVX-512VL", "AVX-512CD", "AVX-512VNNI",
    "AVX-512BF16", "AVX2", "AVX", "FMA", "F16C",
};

/* The compiler says what it was allowed to emit through predefined macros, in the same
 * order as FEATURES; each adds " NAME" and the leading space is skipped. */
static const char COMPILED[] = ""
#ifdef __AVX512F__
                               " AVX-512F"
#endif
#ifdef __AVX512BW__
                               " AVX-512BW"
#endif
#ifdef __AVX512DQ__
                               " AVX-512DQ"
#endif
#ifdef __AVX512VL__
                               " AVX-512VL"
#endif
#ifdef __AVX512CD__
                               " AVX-512CD"
#endif
#ifdef __AVX512VNNI__
                               " AVX-512VNNI"
#endif
#ifdef __AVX512BF16__
                               " AVX-512BF16"
#endif
#ifdef __AVX2__
                               " AVX2"
#endif
#ifdef __AVX__
                               " AVX"
#endif
#ifdef __FMA__
                               " FMA"
#endif
#ifdef __F16C__
                               " F16C"
#endif
    ;

const char *cpu_features_compiled(void)
{
    return COMPILED[0] ? COMPILED + 1 : "none";
}

/* __builtin_cpu_supports also checks that the operating system saves the wide registers;
 * it takes a string literal only, hence the switch. Two features are read from CPUID
 * directly, which is safe because each needs AVX-512 or AVX, checked first: F16C, a name
 * clang 14's builtin (the fuzz build's) does not know, and AVX-512 BF16, which neither
 * compiler's knows. */
static bool cpu_reports(Feature feature)
{
    unsigned eax, ebx, ecx, edx;
    __builtin_cpu_init();
    switch (feature) {
    case AVX512F: return __builtin_cpu_supports("avx512f");
    case AVX512BW: return __builtin_cpu_supports("avx512bw");
    case AVX512DQ: return __builtin_cpu_supports("avx512dq");
    case AVX512VL: return __builtin_cpu_supports("avx512vl");
    case AVX512CD: return __builtin_cpu_supports("avx512cd");
    case AVX512VNNI: return __builtin_cpu_supports("avx512vnni");
    case AVX512BF16: /* CPUID leaf 7, subleaf 1, EAX bit 5 */
        return __builtin_cpu_supports("avx512f") &&
               __get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx) && (eax & bit_AVX512BF16);
    case AVX2: return __builtin_cpu_supports("avx2");
    case AVX: return __builtin_cpu_supports("avx");
    case FMA: return __builtin_cpu_supports("fma");
    case F16C: /* CPUID leaf 1, ECX bit 29 */
        return __builtin_cpu_supports("avx") && __get_cpuid(1, &eax, &ebx, &ecx, &edx) &&
               (ecx & bit_F16C);
    case N_FEATURES: break;
    }
    return false;
}

bool cpu_runs_avx512_blas(void)
{
    return cpu_reports(AVX512F) && cpu_reports(AVX512BW) && cpu_reports(AVX512VL) &&
           cpu_reports(AVX512DQ) && cpu_reports(AVX512CD);
}

bool cpu_runs_avx512_bf16(void)
{
    return cpu_runs_avx512_blas() && cpu_reports(AVX512BF16);
}

bool cpu_runs_avx2_fma(void)
{
    return cpu_reports(AVX2) && cpu_reports(FMA);
}

bool cpu_runs_quant_avx512(void)
{
    return cpu_reports(AVX512F) && cpu_reports(AVX512BW) && cpu_reports(AVX512VL) &&
           cpu_reports(AVX512DQ) && cpu_reports(AVX512VNNI) && cpu_reports(FMA) &&
           cpu_reports(F16C);
}

bool cpu_runs_quant_avx2(void)
{
    return cpu_runs_avx2_fma() && cpu_reports(F16C);
}

/* The strings are built once, whichever thread asks first. */
static pthread_once_t described = PTHREAD_ONCE_INIT;
static char reported[128], features[512];

static void describe(void)
{
    size_t len = 0;
    for (Feature f = 0; f < N_FEATURES; f++)
        if (cpu_reports(f))
            len += (size_t)snprintf(reported + len, sizeof reported - len, "%s%s",
                                    len ? " " : "", FEATURE_NAMES[f]);
    if (len == 0)
        snprintf(reported, sizeof reported, "none");
    const char *compiled = cpu_features_compiled();
    if (strcmp(compiled, reported) == 0)
        snprintf(features, sizeof features, "%s; %s", compiled, gemm_backend_description());
    else
        snprintf(features, sizeof features, "%s (the CPU reports %s); %s", compiled, reported,
                 gemm_backend_description());
}

const char *cpu_features_reported(void)
{
    pthread_once(&described, describe);
    return reported;
}

const char *cpu_features(void)
{
    pthread_once(&described, describe);
    return features;
}

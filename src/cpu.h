/* The x86 vector instructions quill uses: those compiled in (the Makefile's -march=native
 * turns them on for the machine that builds), and those the CPU running it reports. Both
 * matter: most loops are compiled for the first set, while the quantized kernels
 * (quant.c) and OpenBLAS's kernel choice (openblas.c) look at the second at run time. */
#ifndef QUILL_CPU_H
#define QUILL_CPU_H

#include <stdbool.h>

/* The features compiled into this build, widest first: "AVX-512F AVX-512BW ... AVX2 FMA
 * F16C", or "none" for a build without them. */
const char *cpu_features_compiled(void);
/* The same list for what this CPU reports (CPUID), or "none". */
const char *cpu_features_reported(void);
/* One line for a user, the compiled-in features and the matmul backend: "AVX-512F ... F16C;
 * OpenBLAS 0.3.21 (SkylakeX kernel)", with "(the CPU reports ...)" after the features when
 * the CPU's differ (a build for another machine). Loads the BLAS on first use. */
const char *cpu_features(void);

/* What OpenBLAS's AVX-512 kernels (SkylakeX) need: AVX-512 F, BW, VL, DQ and CD. */
bool cpu_runs_avx512_blas(void);
/* What its Cooperlake kernels add to SkylakeX's: AVX-512 BF16 (bfloat16 products). */
bool cpu_runs_avx512_bf16(void);
/* What its AVX2 kernels (Haswell) need: AVX2 and FMA. */
bool cpu_runs_avx2_fma(void);
/* What quill's own quantized kernels need (quant.c): AVX-512 F, BW, VL, DQ and VNNI with
 * FMA and F16C for the AVX-512 ones; AVX2, FMA and F16C for the AVX2 ones. */
bool cpu_runs_quant_avx512(void);
bool cpu_runs_quant_avx2(void);

#endif

#include "openblas.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu.h"
#include "matmul.h"

#ifndef QUILL_OPENBLAS_PATH
#define QUILL_OPENBLAS_PATH "libopenblas.so.0"
#endif

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static OpenBlas lib;
static bool loaded;
static char description[256];

/* The best kernel for this CPU (NULL: nothing better than OpenBLAS's oldest). */
static const char *coretype_for_this_cpu(void)
{
    return gemm_coretype_choose(NULL, cpu_runs_avx512_blas(), cpu_runs_avx512_bf16(),
                                cpu_runs_avx2_fma());
}

/* Resolves the four functions; false when one is missing (not an OpenBLAS). */
static bool resolve(void *handle)
{
    /* POSIX guarantees that a data pointer from dlsym converts to a function pointer */
    *(void **)&lib.sgemm = dlsym(handle, "cblas_sgemm");
    *(void **)&lib.set_num_threads = dlsym(handle, "openblas_set_num_threads");
    *(void **)&lib.get_corename = dlsym(handle, "openblas_get_corename");
    *(void **)&lib.get_config = dlsym(handle, "openblas_get_config");
    return lib.sgemm && lib.set_num_threads && lib.get_corename && lib.get_config;
}

/* Loads the library with OPENBLAS_CORETYPE set to `coretype` (NULL: as the environment
 * is) for the load alone: the host's environment is left as it was found. */
static void *load_with_coretype(const char *path, const char *coretype)
{
    if (coretype)
        setenv("OPENBLAS_CORETYPE", coretype, 1);
    void *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (coretype)
        unsetenv("OPENBLAS_CORETYPE");
    return handle;
}

/* "OpenBLAS 0.3.21 (SkylakeX kernel)": the config string begins with the version. */
static void describe(const char *chooser)
{
    const char *config = lib.get_config(), *core = lib.get_corename();
    int version_len = (int)strcspn(config, " ") + 1;
    version_len += (int)strcspn(config + version_len, " ");
    const char *better = gemm_coretype_choose(core, cpu_runs_avx512_blas(), cpu_runs_avx512_bf16(),
                                              cpu_runs_avx2_fma());
    if (better)
        snprintf(description, sizeof description, "%.*s (%s kernel, %s; this CPU runs %s)",
                 version_len, config, core, chooser, better);
    else
        snprintf(description, sizeof description, "%.*s (%s kernel)", version_len, config,
                 core);
}

static void load(void)
{
    const char *path = QUILL_OPENBLAS_PATH;
    const char *soname = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    void *handle = dlopen(soname, RTLD_NOW | RTLD_NOLOAD);
    char chooser[96] = "loaded before quill";
    if (!handle) {
        const char *user = getenv("OPENBLAS_CORETYPE");
        if (user)
            snprintf(chooser, sizeof chooser, "set by OPENBLAS_CORETYPE=%s", user);
        handle = load_with_coretype(path, user ? NULL : coretype_for_this_cpu());
    }
    if (!handle) {
        snprintf(description, sizeof description,
                 "reference (naive loops; OpenBLAS not loaded: %s)", dlerror());
        return;
    }
    if (!resolve(handle)) {
        snprintf(description, sizeof description,
                 "reference (naive loops; OpenBLAS not loaded: %s lacks a function)", path);
        dlclose(handle);
        return;
    }
    loaded = true;
    describe(chooser);
}

const OpenBlas *openblas(void)
{
    pthread_once(&load_once, load);
    return loaded ? &lib : NULL;
}

const char *openblas_description(void)
{
    pthread_once(&load_once, load);
    return description;
}

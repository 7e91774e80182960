/* `quill quantize` as a user meets it: what it refuses before it converts anything, what it
 * accepts as IN, and the lines it promises (docs/cli.md). The types it chooses and the
 * error of each are tested against llama.cpp's files in test_quant.c. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fileio.h"
#include "gguf.h"
#include "rng.h"
#include "test_util.h"

/* A small llama-like file: one layer's ffn_up (64 x 4), its norm, and an output.weight of
 * rows of 64, which no K-quant's block of 256 divides. */
static void write_small_model(const char *path)
{
    static float up[64 * 4], output[64 * 8], norm[64];
    Rng rng;
    rng_seed(&rng, 7);
    for (int i = 0; i < 64 * 4; i++)
        up[i] = rng_normal(&rng);
    for (int i = 0; i < 64 * 8; i++)
        output[i] = rng_normal(&rng);
    for (int i = 0; i < 64; i++)
        norm[i] = 1.0f;
    GgufWriter *w = gguf_writer_new();
    gguf_writer_add_str(w, "general.architecture", "llama");
    gguf_writer_add_u32(w, "llama.block_count", 1);
    const uint64_t ne_up[2] = {64, 4}, ne_out[2] = {64, 8}, ne_norm[1] = {64};
    gguf_writer_add_tensor(w, "blk.0.ffn_up.weight", GGML_TYPE_F32, 2, ne_up, up);
    gguf_writer_add_tensor(w, "blk.0.ffn_norm.weight", GGML_TYPE_F32, 1, ne_norm, norm);
    gguf_writer_add_tensor(w, "output.weight", GGML_TYPE_F32, 2, ne_out, output);
    Error err;
    cr_assert_eq(gguf_writer_write(w, path, &err), 0, "%s", err.msg);
    gguf_writer_free(w);
}

static char *read_bytes(const char *path, size_t *len)
{
    char *data;
    Error err;
    cr_assert_eq(file_read_all(path, &data, len, &err), 0, "%s", err.msg);
    return data;
}

/* OUT that is IN, under any name (the same path, another spelling, a symbolic link, a
 * hard link): refused before anything is written, and IN keeps every byte. */
Test(quantize, refuses_to_write_over_its_own_input)
{
    const char *dir = test_make_tmpdir();
    char in[512], dotted[512], symlinked[512], hardlinked[512];
    snprintf(in, sizeof in, "%s/m.gguf", dir);
    snprintf(dotted, sizeof dotted, "%s/./m.gguf", dir);
    snprintf(symlinked, sizeof symlinked, "%s/symlink.gguf", dir);
    snprintf(hardlinked, sizeof hardlinked, "%s/hardlink.gguf", dir);
    write_small_model(in);
    cr_assert_eq(symlink(in, symlinked), 0);
    cr_assert_eq(link(in, hardlinked), 0);
    size_t n_before, n_after;
    char *before = read_bytes(in, &n_before);
    const char *outs[] = {in, dotted, symlinked, hardlinked};
    int refused = 0;
    for (int i = 0; i < 4; i++) {
        expect_clean_error("the same file", "quantize %s %s Q8_0", in, outs[i]);
        refused++;
    }
    cr_assert_eq(refused, 4);
    expect_clean_error("the same file", "quantize %s %s Q8_0", symlinked, in);
    char *after = read_bytes(in, &n_after);
    cr_expect(n_before == n_after && memcmp(before, after, n_before) == 0, "IN was changed");
    free(before);
    free(after);
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp", in);
    cr_expect_neq(access(tmp, F_OK), 0, "%s was left behind", tmp);
    /* a directory as OUT is refused before any tensor is converted */
    expect_clean_error("is a directory", "quantize %s %s Q8_0", in, dir);
}

/* A run directory stands for its model.gguf, as for every command that reads a model. */
Test(quantize, takes_a_run_directory_as_in)
{
    const char *dir = test_make_tmpdir();
    char in[512], out[512];
    snprintf(in, sizeof in, "%s/model.gguf", dir);
    snprintf(out, sizeof out, "%s/q8.gguf", dir);
    write_small_model(in);
    quill_ok("quantize %s %s Q8_0", dir, out);
    GgufFile *f;
    Error err;
    cr_assert_eq(gguf_open(&f, out, &err), 0, "%s", err.msg);
    cr_expect_eq(gguf_find_tensor(f, "blk.0.ffn_up.weight")->type, GGML_TYPE_Q8_0);
    gguf_close(f);
}

/* The output projection's Q6_K falls back to Q8_0 when its rows are no multiple of 256,
 * with the line every other fallback prints (as llama.cpp does, with a message). */
Test(quantize, the_output_projections_fallback_is_reported)
{
    const char *dir = test_make_tmpdir();
    char in[512], out[512], *text;
    snprintf(in, sizeof in, "%s/m.gguf", dir);
    snprintf(out, sizeof out, "%s/q4km.gguf", dir);
    write_small_model(in);
    cr_assert_eq(quill(&text, "quantize %s %s Q4_K_M", in, out), 0, "%s", text);
    cr_expect_not_null(strstr(text, "output.weight: rows of 64 are not a multiple of Q6_K's "
                                    "block of 256: using Q8_0 instead\n"),
                       "%s", text);
    cr_expect_not_null(strstr(text, "blk.0.ffn_up.weight: rows of 64 are not a multiple of "
                                    "Q4_K's block of 256: using Q5_0 instead\n"),
                       "%s", text);
    free(text);
    GgufFile *f;
    Error err;
    cr_assert_eq(gguf_open(&f, out, &err), 0, "%s", err.msg);
    cr_expect_eq(gguf_find_tensor(f, "output.weight")->type, GGML_TYPE_Q8_0);
    gguf_close(f);
}

/* Tests for the GGUF reader and writer (src/gguf.c).
 *
 * Three kinds of evidence, from the most to the least independent of the code under test:
 *  - real files written by llama.cpp's converters (../shared/models), checked against facts
 *    known from outside (architecture, shapes, counts);
 *  - files assembled here byte by byte from the format description, which the reader must
 *    accept or reject, and which the writer's output must equal exactly;
 *  - write -> read round trips of every metadata type and of several tensor types.
 * Every hostile input is parsed from a heap block of exactly its own size, so AddressSanitizer
 * (make check) catches any read past the end that the bounds checks might miss. */
#include <dirent.h>
#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fileio.h"
#include "gguf.h"
#include "test_util.h"

/* ---- A byte builder for hand-assembled files (little-endian, as the format says) ---- */

typedef struct {
    uint8_t *p;
    size_t n, cap;
} Bytes;

static void bytes_put(Bytes *b, const void *src, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        cr_assert_not_null(b->p);
    }
    if (n)
        memcpy(b->p + b->n, src, n);
    b->n += n;
}

static void bytes_uint(Bytes *b, uint64_t v, size_t size)
{
    uint8_t le[8];
    for (size_t i = 0; i < size; i++)
        le[i] = (uint8_t)(v >> (8 * i));
    bytes_put(b, le, size);
}

static void bytes_u32(Bytes *b, uint32_t v) { bytes_uint(b, v, 4); }
static void bytes_u64(Bytes *b, uint64_t v) { bytes_uint(b, v, 8); }

static void bytes_str(Bytes *b, const char *s)
{
    bytes_u64(b, strlen(s));
    bytes_put(b, s, strlen(s));
}

static void bytes_pad(Bytes *b, size_t alignment)
{
    while (b->n % alignment)
        bytes_uint(b, 0, 1);
}

static void bytes_header(Bytes *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv)
{
    bytes_put(b, "GGUF", 4);
    bytes_u32(b, version);
    bytes_u64(b, n_tensors);
    bytes_u64(b, n_kv);
}

static void bytes_kv_u32(Bytes *b, const char *key, uint32_t v)
{
    bytes_str(b, key);
    bytes_u32(b, GGUF_TYPE_UINT32);
    bytes_u32(b, v);
}

static void bytes_kv_str(Bytes *b, const char *key, const char *v)
{
    bytes_str(b, key);
    bytes_u32(b, GGUF_TYPE_STRING);
    bytes_str(b, v);
}

static void bytes_tensor_info(Bytes *b, const char *name, uint32_t n_dims, const uint64_t *ne,
                              uint32_t type, uint64_t offset)
{
    bytes_str(b, name);
    bytes_u32(b, n_dims);
    for (uint32_t j = 0; j < n_dims; j++)
        bytes_u64(b, ne[j]);
    bytes_u32(b, type);
    bytes_u64(b, offset);
}

/* A copy in a heap block of exactly n bytes: one byte further is outside the allocation. */
static uint8_t *exact_copy(const uint8_t *p, size_t n)
{
    uint8_t *copy = malloc(n ? n : 1);
    cr_assert_not_null(copy);
    if (n)
        memcpy(copy, p, n);
    return copy;
}

/* Asserts that the n bytes at p are rejected, with a message containing `word` (and `word2`
 * when not NULL), and that nothing is returned. */
static void expect_rejected_bytes(const uint8_t *p, size_t n, const char *word, const char *word2)
{
    uint8_t *copy = exact_copy(p, n);
    GgufFile *f = (GgufFile *)1;
    Error err = {{0}};
    int rc = gguf_parse_buffer(&f, copy, n, &err);
    cr_assert_eq(rc, -1, "accepted a bad file (%zu bytes), expected an error about '%s'", n, word);
    cr_assert_null(f, "*out must be NULL on failure");
    cr_assert_neq(err.msg[0], '\0', "empty error message for a %zu-byte input", n);
    cr_assert_not_null(strstr(err.msg, word), "message lacks '%s': %s", word, err.msg);
    if (word2)
        cr_assert_not_null(strstr(err.msg, word2), "message lacks '%s': %s", word2, err.msg);
    free(copy);
}

static void expect_rejected(const Bytes *b, const char *word, const char *word2)
{
    expect_rejected_bytes(b->p, b->n, word, word2);
}

/* Parses b from an exact-size copy; *copy must be freed after gguf_close. */
static GgufFile *parse_ok(const Bytes *b, uint8_t **copy)
{
    *copy = exact_copy(b->p, b->n);
    GgufFile *f = NULL;
    Error err = {{0}};
    cr_assert_eq(gguf_parse_buffer(&f, *copy, b->n, &err), 0, "rejected: %s", err.msg);
    cr_assert_not_null(f);
    return f;
}

/* ---- One-tensor files with one field to spoil ---- */

typedef struct {
    char magic[5];
    uint32_t version;
    uint32_t n_dims;
    uint64_t ne[GGUF_MAX_DIMS];
    uint32_t type;
    uint64_t offset;
    size_t data_bytes; /* bytes of tensor data actually present in the file */
} OneTensor;

/* general.architecture = "llama" and one F32 tensor 't' of shape [4, 2] (32 bytes). */
static OneTensor one_tensor_valid(void)
{
    return (OneTensor){"GGUF", 3, 2, {4, 2, 1, 1}, GGML_TYPE_F32, 0, 32};
}

static Bytes one_tensor_file(const OneTensor *s)
{
    Bytes b = {0};
    bytes_put(&b, s->magic, 4);
    bytes_u32(&b, s->version);
    bytes_u64(&b, 1);
    bytes_u64(&b, 1);
    bytes_kv_str(&b, "general.architecture", "llama");
    bytes_tensor_info(&b, "t", s->n_dims, s->ne, s->type, s->offset);
    bytes_pad(&b, GGUF_DEFAULT_ALIGNMENT);
    for (size_t i = 0; i < s->data_bytes; i++)
        bytes_uint(&b, i & 0xff, 1);
    return b;
}

static void expect_one_tensor_rejected(const OneTensor *s, const char *word, const char *word2)
{
    Bytes b = one_tensor_file(s);
    expect_rejected(&b, word, word2);
    free(b.p);
}

/* ---- Files on disk ---- */

static char *path_join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    cr_assert_not_null(p);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static int dir_count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    cr_assert_not_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            n++;
    closedir(d);
    return n;
}

static void fill_pattern(uint8_t *p, size_t n, uint32_t seed)
{
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        x = x * 1664525u + 1013904223u;
        p[i] = (uint8_t)(x >> 24);
    }
}

/* ---- The type tables, against ggml-common.h's block structs ---- */

Test(gguf, tensor_type_layouts_match_ggml)
{
    struct {
        uint32_t type;
        const char *name;
        uint64_t block, bytes;
    } expected[] = {
        {GGML_TYPE_F32, "F32", 1, 4},       {GGML_TYPE_F16, "F16", 1, 2},
        {GGML_TYPE_BF16, "BF16", 1, 2},     {GGML_TYPE_Q4_0, "Q4_0", 32, 18},
        {GGML_TYPE_Q4_1, "Q4_1", 32, 20},   {GGML_TYPE_Q5_0, "Q5_0", 32, 22},
        {GGML_TYPE_Q5_1, "Q5_1", 32, 24},   {GGML_TYPE_Q8_0, "Q8_0", 32, 34},
        {GGML_TYPE_Q8_1, "Q8_1", 32, 36},   {GGML_TYPE_Q2_K, "Q2_K", 256, 84},
        {GGML_TYPE_Q3_K, "Q3_K", 256, 110}, {GGML_TYPE_Q4_K, "Q4_K", 256, 144},
        {GGML_TYPE_Q5_K, "Q5_K", 256, 176}, {GGML_TYPE_Q6_K, "Q6_K", 256, 210},
        {GGML_TYPE_Q8_K, "Q8_K", 256, 292},
    };
    for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++) {
        uint64_t block = 0, bytes = 0;
        cr_assert_eq(gguf_tensor_type_layout(expected[i].type, &block, &bytes), 0);
        cr_assert_eq(block, expected[i].block, "%s block size", expected[i].name);
        cr_assert_eq(bytes, expected[i].bytes, "%s type size", expected[i].name);
        cr_assert_str_eq(gguf_tensor_type_name(expected[i].type), expected[i].name);
    }
    /* 4 and 5 were Q4_2 and Q4_3, removed from ggml; 16..29 are IQ types quill cannot run. */
    uint32_t unknown[] = {4, 5, 16, 29, 31, 1000, UINT32_MAX};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        cr_assert_null(gguf_tensor_type_name(unknown[i]));
        cr_assert_eq(gguf_tensor_type_layout(unknown[i], NULL, NULL), -1);
    }
}

Test(gguf, value_type_names)
{
    cr_assert_str_eq(gguf_type_name(GGUF_TYPE_UINT8), "u8");
    cr_assert_str_eq(gguf_type_name(GGUF_TYPE_UINT32), "u32");
    cr_assert_str_eq(gguf_type_name(GGUF_TYPE_FLOAT32), "f32");
    cr_assert_str_eq(gguf_type_name(GGUF_TYPE_STRING), "string");
    cr_assert_str_eq(gguf_type_name(GGUF_TYPE_ARRAY), "array");
    cr_assert_str_eq(gguf_type_name(GGUF_TYPE_FLOAT64), "f64");
    cr_assert_str_eq(gguf_type_name((GgufType)13), "unknown");
}

/* ---- The writer's bytes, against a file assembled by hand from the format description ---- */

Test(gguf, writer_output_equals_hand_assembled_file)
{
    float f32[3] = {1.0f, -2.5f, 3.25f};
    uint8_t q8[2 * 34];
    fill_pattern(q8, sizeof q8, 7);
    uint64_t ne_f32[1] = {3}, ne_q8[2] = {32, 2};

    GgufWriter *w = gguf_writer_new();
    gguf_writer_add_u32(w, "a.count", 7);
    gguf_writer_add_str(w, "a.name", "hi");
    gguf_writer_add_tensor(w, "small", GGML_TYPE_F32, 1, ne_f32, f32);
    gguf_writer_add_tensor(w, "quant", GGML_TYPE_Q8_0, 2, ne_q8, q8);
    const char *dir = test_make_tmpdir();
    char *path = path_join(dir, "w.gguf");
    Error err = {{0}};
    cr_assert_eq(gguf_writer_write(w, path, &err), 0, "%s", err.msg);
    gguf_writer_free(w);

    Bytes b = {0};
    bytes_header(&b, 3, 2, 2);
    bytes_kv_u32(&b, "a.count", 7);
    bytes_kv_str(&b, "a.name", "hi");
    bytes_tensor_info(&b, "small", 1, ne_f32, GGML_TYPE_F32, 0);
    bytes_tensor_info(&b, "quant", 2, ne_q8, GGML_TYPE_Q8_0, 32); /* 12 bytes padded to 32 */
    bytes_pad(&b, 32);
    for (int i = 0; i < 3; i++) {
        uint32_t bits;
        memcpy(&bits, &f32[i], 4);
        bytes_u32(&b, bits);
    }
    bytes_pad(&b, 32);
    bytes_put(&b, q8, sizeof q8);
    bytes_pad(&b, 32); /* the last tensor is padded too, as llama.cpp writes it */

    char *got;
    size_t got_len;
    cr_assert_eq(file_read_all(path, &got, &got_len, &err), 0, "%s", err.msg);
    cr_assert_eq(got_len, b.n, "file is %zu bytes, expected %zu", got_len, b.n);
    for (size_t i = 0; i < b.n; i++)
        cr_assert_eq((uint8_t)got[i], b.p[i], "byte %zu differs", i);
    free(got);
    free(b.p);
    unlink(path);
    rmdir(dir);
    free(path);
}

/* ---- Round trips ---- */

static const uint8_t rt_u8[] = {0, 1, 255};
static const int8_t rt_i8[] = {-128, 0, 127};
static const uint16_t rt_u16[] = {0, 65535, 1234};
static const int16_t rt_i16[] = {-32768, 32767, -1};
static const uint32_t rt_u32[] = {0, UINT32_MAX, 42};
static const int32_t rt_i32[] = {INT32_MIN, INT32_MAX, -7};
static const float rt_f32[] = {0.0f, -1.5f, 3.0e38f, 1.0e-30f};
static const uint8_t rt_bool[] = {1, 0, 1};
static const uint64_t rt_u64[] = {UINT64_MAX, 0, 1ull << 40};
static const int64_t rt_i64[] = {INT64_MIN, INT64_MAX, -3};
static const double rt_f64[] = {3.141592653589793, -0.0, 1e300};
static const char *const rt_strs[] = {"<unk>", "", "h\xc3\xa9llo", "a longer string value"};
static const float rt_tensor[4] = {1.0f, 2.0f, 3.0f, 4.0f};

/* Every metadata type, followed by one small tensor (so that the file ends with data that the
 * reader needs, which the truncation test relies on). */
static void write_metadata_file(const char *path)
{
    static const uint64_t ne[1] = {4};
    GgufWriter *w = gguf_writer_new();
    gguf_writer_add_u32(w, "s.u32", 4000000000u);
    gguf_writer_add_i32(w, "s.i32", -123456);
    gguf_writer_add_u64(w, "s.u64", 0xfedcba9876543210ull);
    gguf_writer_add_u64(w, "s.u64_small", 9);
    gguf_writer_add_f32(w, "s.f32", 1e-5f);
    gguf_writer_add_bool(w, "s.true", true);
    gguf_writer_add_bool(w, "s.false", false);
    gguf_writer_add_str(w, "s.str", "llama");
    gguf_writer_add_str(w, "s.empty", "");
    gguf_writer_add_array(w, "a.u8", GGUF_TYPE_UINT8, rt_u8, 3);
    gguf_writer_add_array(w, "a.i8", GGUF_TYPE_INT8, rt_i8, 3);
    gguf_writer_add_array(w, "a.u16", GGUF_TYPE_UINT16, rt_u16, 3);
    gguf_writer_add_array(w, "a.i16", GGUF_TYPE_INT16, rt_i16, 3);
    gguf_writer_add_array(w, "a.u32", GGUF_TYPE_UINT32, rt_u32, 3);
    gguf_writer_add_array(w, "a.i32", GGUF_TYPE_INT32, rt_i32, 3);
    gguf_writer_add_array(w, "a.f32", GGUF_TYPE_FLOAT32, rt_f32, 4);
    gguf_writer_add_array(w, "a.bool", GGUF_TYPE_BOOL, rt_bool, 3);
    gguf_writer_add_array(w, "a.u64", GGUF_TYPE_UINT64, rt_u64, 3);
    gguf_writer_add_array(w, "a.i64", GGUF_TYPE_INT64, rt_i64, 3);
    gguf_writer_add_array(w, "a.f64", GGUF_TYPE_FLOAT64, rt_f64, 3);
    gguf_writer_add_array(w, "a.empty", GGUF_TYPE_UINT32, NULL, 0);
    gguf_writer_add_str_array(w, "a.str", rt_strs, 4);
    gguf_writer_add_str_array(w, "a.str_empty", NULL, 0);
    gguf_writer_add_tensor(w, "meta.t", GGML_TYPE_F32, 1, ne, rt_tensor);
    Error err = {{0}};
    cr_assert_eq(gguf_writer_write(w, path, &err), 0, "%s", err.msg);
    gguf_writer_free(w);
}

static void expect_array(const GgufFile *f, const char *key, GgufType elem_type,
                         const void *want, uint64_t n, size_t elem_size)
{
    uint64_t got_n = 0;
    const void *data = NULL;
    Error err = {{0}};
    cr_assert_eq(gguf_get_array(f, key, elem_type, &got_n, &data, &err), 0, "%s", err.msg);
    cr_assert_eq(got_n, n, "%s: count", key);
    cr_assert_not_null(data, "%s: array pointer must not be NULL", key);
    if (n > 0)
        cr_assert_eq(memcmp(data, want, n * elem_size), 0, "%s: elements differ", key);
}

Test(gguf, round_trip_every_metadata_type)
{
    const char *dir = test_make_tmpdir();
    char *path = path_join(dir, "meta.gguf");
    write_metadata_file(path);

    GgufFile *f = NULL;
    Error err = {{0}};
    cr_assert_eq(gguf_open(&f, path, &err), 0, "%s", err.msg);
    cr_assert_eq(f->version, 3);
    cr_assert_eq(f->n_kv, 23);
    cr_assert_eq(f->n_tensors, 1);
    cr_assert_eq(memcmp(f->tensors[0].data, rt_tensor, sizeof rt_tensor), 0);
    cr_assert_str_eq(f->kv[0].key, "s.u32", "keys keep their order");

    uint32_t u32;
    int32_t i32;
    float f32;
    bool b;
    const char *s;
    cr_assert_eq(gguf_get_u32(f, "s.u32", &u32, &err), 0, "%s", err.msg);
    cr_assert_eq(u32, 4000000000u);
    cr_assert_eq(gguf_get_i32(f, "s.i32", &i32, &err), 0, "%s", err.msg);
    cr_assert_eq(i32, -123456);
    cr_assert_eq(gguf_find_kv(f, "s.u64")->type, GGUF_TYPE_UINT64);
    cr_assert_eq(gguf_find_kv(f, "s.u64")->value.u, 0xfedcba9876543210ull);
    cr_assert_eq(gguf_get_u32(f, "s.u64_small", &u32, &err), 0, "any integer type that fits");
    cr_assert_eq(u32, 9);
    cr_assert_eq(gguf_get_f32(f, "s.f32", &f32, &err), 0, "%s", err.msg);
    cr_assert_eq(f32, 1e-5f, "f32 must survive bit for bit");
    cr_assert_eq(gguf_get_bool(f, "s.true", &b, &err), 0, "%s", err.msg);
    cr_assert(b);
    cr_assert_eq(gguf_get_bool(f, "s.false", &b, &err), 0, "%s", err.msg);
    cr_assert_not(b);
    cr_assert_eq(gguf_get_str(f, "s.str", &s, &err), 0, "%s", err.msg);
    cr_assert_str_eq(s, "llama");
    cr_assert_eq(gguf_get_str(f, "s.empty", &s, &err), 0, "%s", err.msg);
    cr_assert_str_eq(s, "");

    expect_array(f, "a.u8", GGUF_TYPE_UINT8, rt_u8, 3, 1);
    expect_array(f, "a.i8", GGUF_TYPE_INT8, rt_i8, 3, 1);
    expect_array(f, "a.u16", GGUF_TYPE_UINT16, rt_u16, 3, 2);
    expect_array(f, "a.i16", GGUF_TYPE_INT16, rt_i16, 3, 2);
    expect_array(f, "a.u32", GGUF_TYPE_UINT32, rt_u32, 3, 4);
    expect_array(f, "a.i32", GGUF_TYPE_INT32, rt_i32, 3, 4);
    expect_array(f, "a.f32", GGUF_TYPE_FLOAT32, rt_f32, 4, 4);
    expect_array(f, "a.bool", GGUF_TYPE_BOOL, rt_bool, 3, 1);
    expect_array(f, "a.u64", GGUF_TYPE_UINT64, rt_u64, 3, 8);
    expect_array(f, "a.i64", GGUF_TYPE_INT64, rt_i64, 3, 8);
    expect_array(f, "a.f64", GGUF_TYPE_FLOAT64, rt_f64, 3, 8);
    expect_array(f, "a.empty", GGUF_TYPE_UINT32, NULL, 0, 4);

    uint64_t n;
    const void *data;
    cr_assert_eq(gguf_get_array(f, "a.str", GGUF_TYPE_STRING, &n, &data, &err), 0, "%s", err.msg);
    cr_assert_eq(n, 4);
    for (int i = 0; i < 4; i++)
        cr_assert_str_eq(((char *const *)data)[i], rt_strs[i]);
    cr_assert_eq(gguf_get_array(f, "a.str_empty", GGUF_TYPE_STRING, &n, &data, &err), 0);
    cr_assert_eq(n, 0);
    gguf_close(f);
    unlink(path);
    rmdir(dir);
    free(path);
}

Test(gguf, getters_name_the_key_when_they_fail)
{
    const char *dir = test_make_tmpdir();
    char *path = path_join(dir, "meta.gguf");
    write_metadata_file(path);
    GgufFile *f = NULL;
    Error err = {{0}};
    cr_assert_eq(gguf_open(&f, path, &err), 0, "%s", err.msg);
    uint32_t u32;
    int32_t i32;
    float f32;
    bool b;
    const char *s;
    uint64_t n;
    const void *data;

    cr_assert_eq(gguf_get_u32(f, "no.such.key", &u32, &err), -1);
    cr_assert(strstr(err.msg, "'no.such.key'") && strstr(err.msg, "missing"), "%s", err.msg);
    cr_assert_eq(gguf_get_u32(f, "s.i32", &u32, &err), -1, "a negative value is no u32");
    cr_assert(strstr(err.msg, "'s.i32'") && strstr(err.msg, "does not fit"), "%s", err.msg);
    cr_assert_eq(gguf_get_i32(f, "s.u32", &i32, &err), -1, "4e9 is no i32");
    cr_assert(strstr(err.msg, "does not fit"), "%s", err.msg);
    cr_assert_eq(gguf_get_u32(f, "s.str", &u32, &err), -1);
    cr_assert(strstr(err.msg, "'s.str'") && strstr(err.msg, "string"), "%s", err.msg);
    cr_assert_eq(gguf_get_u32(f, "s.true", &u32, &err), -1, "a bool is not an integer");
    cr_assert_eq(gguf_get_f32(f, "s.u32", &f32, &err), -1);
    cr_assert_eq(gguf_get_bool(f, "s.u32", &b, &err), -1);
    cr_assert_eq(gguf_get_str(f, "a.str", &s, &err), -1);
    cr_assert(strstr(err.msg, "array of string"), "%s", err.msg);
    cr_assert_eq(gguf_get_array(f, "a.u32", GGUF_TYPE_INT32, &n, &data, &err), -1);
    cr_assert(strstr(err.msg, "'a.u32'") && strstr(err.msg, "array of u32"), "%s", err.msg);
    cr_assert_eq(gguf_get_array(f, "s.u32", GGUF_TYPE_UINT32, &n, &data, &err), -1);
    gguf_close(f);
    unlink(path);
    rmdir(dir);
    free(path);
}

/* Scalar types the writer has no add function for, read from hand-assembled bytes. */
Test(gguf, reader_widens_every_scalar_type)
{
    Bytes b = {0};
    bytes_header(&b, 3, 0, 7);
    const struct {
        const char *key;
        GgufType type;
        uint64_t bits;
        size_t size;
    } kvs[] = {
        {"u8", GGUF_TYPE_UINT8, 200, 1},          {"i8", GGUF_TYPE_INT8, 0x80, 1},
        {"u16", GGUF_TYPE_UINT16, 0xbeef, 2},     {"i16", GGUF_TYPE_INT16, 0xfffe, 2},
        {"i64", GGUF_TYPE_INT64, 1ull << 63, 8}, {"f64", GGUF_TYPE_FLOAT64, 0x3ff8000000000000, 8},
        {"bool2", GGUF_TYPE_BOOL, 2, 1},
    };
    for (size_t i = 0; i < 7; i++) {
        bytes_str(&b, kvs[i].key);
        bytes_u32(&b, kvs[i].type);
        bytes_uint(&b, kvs[i].bits, kvs[i].size);
    }
    uint8_t *copy;
    GgufFile *f = parse_ok(&b, &copy);
    cr_assert_eq(gguf_find_kv(f, "u8")->value.u, 200);
    cr_assert_eq(gguf_find_kv(f, "i8")->value.i, -128);
    cr_assert_eq(gguf_find_kv(f, "u16")->value.u, 0xbeef);
    cr_assert_eq(gguf_find_kv(f, "i16")->value.i, -2);
    cr_assert_eq(gguf_find_kv(f, "i64")->value.i, INT64_MIN);
    cr_assert_eq(gguf_find_kv(f, "f64")->value.f, 1.5);
    cr_assert_eq(gguf_find_kv(f, "bool2")->value.u, 1, "any nonzero byte is true, stored as 1");
    int32_t i32;
    Error err = {{0}};
    cr_assert_eq(gguf_get_i32(f, "i16", &i32, &err), 0, "%s", err.msg);
    cr_assert_eq(i32, -2);
    float f32;
    cr_assert_eq(gguf_get_f32(f, "f64", &f32, &err), 0, "f64 is read as a float too");
    cr_assert_eq(f32, 1.5f);
    gguf_close(f);
    free(copy);
    free(b.p);
}

/* gguf_writer_add_kv carries pairs over unchanged: a file of every metadata type copied pair by
 * pair is the same file, byte for byte; and the scalar widths the other add functions do not
 * write (u8, i8, u16, i16, i64, f64) keep their type and value. */
Test(gguf, writer_copies_pairs_as_read)
{
    const char *dir = test_make_tmpdir();
    char *path = path_join(dir, "meta.gguf"), *copy_path = path_join(dir, "copy.gguf");
    write_metadata_file(path);
    GgufFile *f = NULL;
    Error err = {{0}};
    cr_assert_eq(gguf_open(&f, path, &err), 0, "%s", err.msg);
    GgufWriter *w = gguf_writer_new();
    for (uint64_t i = 0; i < f->n_kv; i++)
        gguf_writer_add_kv(w, &f->kv[i]);
    const GgufTensor *t = &f->tensors[0];
    gguf_writer_add_tensor(w, t->name, (GgmlType)t->type, t->n_dims, t->ne, t->data);
    cr_assert_eq(gguf_writer_write(w, copy_path, &err), 0, "%s", err.msg);
    gguf_writer_free(w);
    size_t n_a, n_b;
    char *a, *b;
    cr_assert_eq(file_read_all(path, &a, &n_a, &err), 0, "%s", err.msg);
    cr_assert_eq(file_read_all(copy_path, &b, &n_b, &err), 0, "%s", err.msg);
    cr_expect(n_a == n_b && memcmp(a, b, n_a) == 0, "the copy differs from the original");
    free(a);
    free(b);
    gguf_close(f);

    Bytes raw = {0};
    bytes_header(&raw, 3, 0, 6);
    const struct {
        const char *key;
        GgufType type;
        uint64_t bits;
        size_t size;
    } kvs[] = {
        {"u8", GGUF_TYPE_UINT8, 200, 1},      {"i8", GGUF_TYPE_INT8, 0x80, 1},
        {"u16", GGUF_TYPE_UINT16, 0xbeef, 2}, {"i16", GGUF_TYPE_INT16, 0xfffe, 2},
        {"i64", GGUF_TYPE_INT64, 1ull << 63, 8}, {"f64", GGUF_TYPE_FLOAT64, 0x3ff8000000000000, 8},
    };
    for (size_t i = 0; i < 6; i++) {
        bytes_str(&raw, kvs[i].key);
        bytes_u32(&raw, kvs[i].type);
        bytes_uint(&raw, kvs[i].bits, kvs[i].size);
    }
    uint8_t *raw_copy;
    f = parse_ok(&raw, &raw_copy);
    w = gguf_writer_new();
    for (uint64_t i = 0; i < f->n_kv; i++)
        gguf_writer_add_kv(w, &f->kv[i]);
    cr_assert_eq(gguf_writer_write(w, copy_path, &err), 0, "%s", err.msg);
    gguf_writer_free(w);
    GgufFile *g = NULL;
    cr_assert_eq(gguf_open(&g, copy_path, &err), 0, "%s", err.msg);
    for (size_t i = 0; i < 6; i++) {
        const GgufKV *kv = gguf_find_kv(g, kvs[i].key);
        cr_assert(kv && kv->type == kvs[i].type, "%s: type", kvs[i].key);
        cr_expect(memcmp(&kv->value, &gguf_find_kv(f, kvs[i].key)->value, sizeof kv->value) == 0,
                  "%s: value", kvs[i].key);
    }
    gguf_close(g);
    gguf_close(f);
    free(raw_copy);
    free(raw.p);
    free(path);
    free(copy_path);
}

typedef struct {
    const char *name;
    GgmlType type;
    uint32_t n_dims;
    uint64_t ne[GGUF_MAX_DIMS];
} TensorSpec;

static const TensorSpec rt_tensors[] = {
    {"vec.f32", GGML_TYPE_F32, 1, {5, 1, 1, 1}},
    {"mat.f16", GGML_TYPE_F16, 2, {3, 2, 1, 1}},
    {"mat.q4_0", GGML_TYPE_Q4_0, 2, {64, 3, 1, 1}},
    {"cube.q8_0", GGML_TYPE_Q8_0, 3, {32, 1, 3, 1}},
    {"four.q6_k", GGML_TYPE_Q6_K, 4, {256, 2, 1, 2}},
    {"mat.bf16", GGML_TYPE_BF16, 2, {7, 1, 1, 1}},
};
#define N_RT_TENSORS (sizeof rt_tensors / sizeof rt_tensors[0])

static uint64_t spec_nbytes(const TensorSpec *t)
{
    uint64_t block, size, n = 1;
    cr_assert_eq(gguf_tensor_type_layout(t->type, &block, &size), 0);
    for (int j = 0; j < GGUF_MAX_DIMS; j++)
        n *= t->ne[j];
    return n / block * size;
}

/* Writes the rt_tensors (plus a little metadata) to path; data[i] holds tensor i's bytes. */
static void write_tensor_file(const char *path, uint8_t *data[N_RT_TENSORS], uint32_t alignment)
{
    GgufWriter *w = gguf_writer_new();
    gguf_writer_add_str(w, "general.architecture", "llama");
    if (alignment)
        gguf_writer_add_u32(w, "general.alignment", alignment);
    for (size_t i = 0; i < N_RT_TENSORS; i++) {
        size_t n = (size_t)spec_nbytes(&rt_tensors[i]);
        data[i] = malloc(n);
        cr_assert_not_null(data[i]);
        fill_pattern(data[i], n, (uint32_t)i);
        gguf_writer_add_tensor(w, rt_tensors[i].name, rt_tensors[i].type, rt_tensors[i].n_dims,
                               rt_tensors[i].ne, data[i]);
    }
    Error err = {{0}};
    cr_assert_eq(gguf_writer_write(w, path, &err), 0, "%s", err.msg);
    gguf_writer_free(w);
}

static void check_tensor_file(const char *path, uint8_t *data[N_RT_TENSORS], uint64_t alignment)
{
    GgufFile *f = NULL;
    Error err = {{0}};
    cr_assert_eq(gguf_open(&f, path, &err), 0, "%s", err.msg);
    cr_assert_eq(f->alignment, alignment);
    cr_assert_eq(f->data_offset % alignment, 0);
    cr_assert_eq(f->n_tensors, N_RT_TENSORS);
    uint64_t expected_offset = 0;
    for (size_t i = 0; i < N_RT_TENSORS; i++) {
        const TensorSpec *want = &rt_tensors[i];
        const GgufTensor *t = gguf_find_tensor(f, want->name);
        cr_assert_not_null(t, "tensor %s missing", want->name);
        cr_assert_eq(t, &f->tensors[i], "tensors keep their order");
        cr_assert_eq(t->type, (uint32_t)want->type);
        cr_assert_eq(t->n_dims, want->n_dims);
        for (int j = 0; j < GGUF_MAX_DIMS; j++)
            cr_assert_eq(t->ne[j], want->ne[j], "%s ne[%d]", want->name, j);
        cr_assert_eq(t->nbytes, spec_nbytes(want));
        cr_assert_eq(t->offset, expected_offset, "%s: tensors are packed in order", want->name);
        cr_assert_eq(t->offset % alignment, 0);
        cr_assert_eq((uintptr_t)t->data % alignment, 0, "mmapped data is aligned in memory");
        cr_assert_eq(memcmp(t->data, data[i], t->nbytes), 0, "%s: data differs", want->name);
        expected_offset += (t->nbytes + alignment - 1) / alignment * alignment;
    }
    cr_assert_eq(f->data_offset + expected_offset, f->map_size, "the last tensor is padded too");
    gguf_close(f);
}

/* Writes the round-trip tensors (with general.alignment when `requested` is not 0) and
 * reads them back, expecting the data laid out at `expected` alignment. */
static void round_trip_at_alignment(uint32_t requested, uint64_t expected)
{
    const char *dir = test_make_tmpdir();
    char *path = path_join(dir, "tensors.gguf");
    uint8_t *data[N_RT_TENSORS];
    write_tensor_file(path, data, requested);
    check_tensor_file(path, data, expected);
    for (size_t i = 0; i < N_RT_TENSORS; i++)
        free(data[i]);
    unlink(path);
    rmdir(dir);
    free(path);
}

Test(gguf, round_trip_tensors)
{
    round_trip_at_alignment(0, 32);
}

Test(gguf, round_trip_with_general_alignment)
{
    round_trip_at_alignment(256, 256);
}

/* ---- Writer errors ---- */

static void expect_writer_error(GgufWriter *w, const char *word, const char *word2)
{
    const char *dir = test_make_tmpdir();
    char *path = path_join(dir, "bad.gguf");
    Error err = {{0}};
    cr_assert_eq(gguf_writer_write(w, path, &err), -1, "write should fail with '%s'", word);
    cr_assert(strstr(err.msg, path), "message names the file: %s", err.msg);
    cr_assert(strstr(err.msg, word), "message lacks '%s': %s", word, err.msg);
    if (word2)
        cr_assert(strstr(err.msg, word2), "message lacks '%s': %s", word2, err.msg);
    cr_assert_eq(dir_count_entries(dir), 0, "a failed write creates no file");
    gguf_writer_free(w);
    rmdir(dir);
    free(path);
}

Test(gguf, writer_rejects_duplicates_and_bad_tensors)
{
    float data[64] = {0};
    uint64_t ne_ok[2] = {32, 2}, ne_33[1] = {33}, ne_zero[2] = {4, 0}, ne5[5] = {1, 1, 1, 1, 1};
    GgufWriter *w;

    w = gguf_writer_new();
    gguf_writer_add_u32(w, "a", 1);
    gguf_writer_add_str(w, "a", "again");
    expect_writer_error(w, "duplicate key 'a'", NULL);

    w = gguf_writer_new();
    gguf_writer_add_tensor(w, "t", GGML_TYPE_F32, 2, ne_ok, data);
    gguf_writer_add_tensor(w, "t", GGML_TYPE_F32, 2, ne_ok, data);
    expect_writer_error(w, "duplicate tensor name 't'", NULL);

    w = gguf_writer_new();
    gguf_writer_add_tensor(w, "q", GGML_TYPE_Q4_0, 1, ne_33, data);
    expect_writer_error(w, "tensor 'q'", "multiple of the Q4_0 block size 32");

    w = gguf_writer_new();
    gguf_writer_add_tensor(w, "u", (GgmlType)99, 2, ne_ok, data);
    expect_writer_error(w, "tensor 'u'", "unknown tensor type 99");

    w = gguf_writer_new();
    gguf_writer_add_tensor(w, "five", GGML_TYPE_F32, 5, ne5, data);
    expect_writer_error(w, "tensor 'five'", "n_dims");

    w = gguf_writer_new();
    gguf_writer_add_tensor(w, "empty", GGML_TYPE_F32, 2, ne_zero, data);
    expect_writer_error(w, "tensor 'empty'", "ne[1] is 0");

    char long_name[65];
    memset(long_name, 'x', 64);
    long_name[64] = '\0';
    w = gguf_writer_new();
    gguf_writer_add_tensor(w, long_name, GGML_TYPE_F32, 2, ne_ok, data);
    expect_writer_error(w, "longer than 63", NULL);

    w = gguf_writer_new();
    gguf_writer_add_array(w, "arr", GGUF_TYPE_STRING, data, 1);
    expect_writer_error(w, "'arr'", NULL);

    w = gguf_writer_new();
    gguf_writer_add_u32(w, "general.alignment", 48);
    expect_writer_error(w, "general.alignment", "power of two");

    /* The first error is the one reported; later adds are ignored. */
    w = gguf_writer_new();
    gguf_writer_add_u32(w, "k", 1);
    gguf_writer_add_u32(w, "k", 2);
    gguf_writer_add_tensor(w, "u", (GgmlType)99, 2, ne_ok, data);
    expect_writer_error(w, "duplicate key 'k'", NULL);

    expect_writer_error(NULL, "no writer", NULL);
}

Test(gguf, failed_write_leaves_existing_file_untouched)
{
    const char *dir = test_make_tmpdir();
    char *path = path_join(dir, "model.gguf");
    write_metadata_file(path);
    char *before;
    size_t before_len;
    Error err = {{0}};
    cr_assert_eq(file_read_all(path, &before, &before_len, &err), 0, "%s", err.msg);

    float data[4] = {0};
    uint64_t ne[1] = {4};
    GgufWriter *w = gguf_writer_new();
    gguf_writer_add_str(w, "general.architecture", "llama");
    gguf_writer_add_tensor(w, "x", GGML_TYPE_F32, 1, ne, data);
    gguf_writer_add_tensor(w, "x", GGML_TYPE_F32, 1, ne, data);
    cr_assert_eq(gguf_writer_write(w, path, &err), -1);
    cr_assert(strstr(err.msg, "duplicate tensor name 'x'"), "%s", err.msg);
    gguf_writer_free(w);

    char *after;
    size_t after_len;
    cr_assert_eq(file_read_all(path, &after, &after_len, &err), 0, "%s", err.msg);
    cr_assert_eq(after_len, before_len);
    cr_assert_eq(memcmp(after, before, before_len), 0, "the old file must be untouched");
    cr_assert_eq(dir_count_entries(dir), 1, "no temporary file may remain");

    /* A directory that does not exist: the error names the path. */
    char *nowhere = path_join(dir, "no/such/dir/m.gguf");
    w = gguf_writer_new();
    gguf_writer_add_u32(w, "a", 1);
    cr_assert_eq(gguf_writer_write(w, nowhere, &err), -1);
    cr_assert(strstr(err.msg, nowhere), "%s", err.msg);
    gguf_writer_free(w);

    free(before);
    free(after);
    free(nowhere);
    unlink(path);
    rmdir(dir);
    free(path);
}

/* ---- Real files written by llama.cpp ---- */

static int count_tensors_of_type(const GgufFile *f, uint32_t type)
{
    int n = 0;
    for (uint64_t i = 0; i < f->n_tensors; i++)
        n += f->tensors[i].type == type;
    return n;
}

/* Every tensor must lie inside the mapping, after the data section start. */
static void check_tensors_inside_file(const GgufFile *f)
{
    const uint8_t *start = (const uint8_t *)f->map + f->data_offset;
    const uint8_t *end = (const uint8_t *)f->map + f->map_size;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const GgufTensor *t = &f->tensors[i];
        const uint8_t *p = t->data;
        cr_assert(p >= start && p <= end && t->nbytes <= (uint64_t)(end - p),
                  "tensor '%s' lies outside the file", t->name);
        cr_assert_eq(t->offset % f->alignment, 0);
    }
}

Test(gguf, reads_stories260K)
{
    SHARED_FILE_OR_SKIP(path, "models/stories260K.gguf");
    GgufFile *f = NULL;
    Error err = {{0}};
    cr_assert_eq(gguf_open(&f, path, &err), 0, "%s", err.msg);
    cr_assert_eq(f->version, 3);
    cr_assert_eq(f->alignment, 32);
    cr_assert_eq(f->n_kv, 19);
    cr_assert_eq(f->n_tensors, 48, "token_embd, output_norm, output + 5 layers x 9");
    const char *arch;
    cr_assert_eq(gguf_get_str(f, "general.architecture", &arch, &err), 0, "%s", err.msg);
    cr_assert_str_eq(arch, "llama");
    uint32_t v;
    cr_assert_eq(gguf_get_u32(f, "llama.block_count", &v, &err), 0, "%s", err.msg);
    cr_assert_eq(v, 5);
    cr_assert_eq(gguf_get_u32(f, "llama.embedding_length", &v, &err), 0);
    cr_assert_eq(v, 64);
    cr_assert_eq(gguf_get_u32(f, "llama.attention.head_count", &v, &err), 0);
    cr_assert_eq(v, 8);
    cr_assert_eq(gguf_get_u32(f, "llama.attention.head_count_kv", &v, &err), 0);
    cr_assert_eq(v, 4);
    float eps;
    cr_assert_eq(gguf_get_f32(f, "llama.attention.layer_norm_rms_epsilon", &eps, &err), 0);
    cr_assert_float_eq(eps, 1e-5f, 1e-9f);

    uint64_t n;
    const void *tokens;
    cr_assert_eq(gguf_get_array(f, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, &n, &tokens, &err),
                 0, "%s", err.msg);
    cr_assert_eq(n, 512);
    cr_assert_str_eq(((char *const *)tokens)[0], "<unk>");
    cr_assert_str_eq(((char *const *)tokens)[1], "<s>");
    cr_assert_str_eq(((char *const *)tokens)[3], "<0x00>");
    const void *scores;
    cr_assert_eq(gguf_get_array(f, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, &n, &scores, &err),
                 0, "%s", err.msg);
    cr_assert_eq(n, 512);

    const GgufTensor *emb = gguf_find_tensor(f, "token_embd.weight");
    cr_assert_not_null(emb);
    cr_assert_eq(emb->type, GGML_TYPE_F32);
    cr_assert_eq(emb->n_dims, 2);
    cr_assert_eq(emb->ne[0], 64, "row length = embedding_length");
    cr_assert_eq(emb->ne[1], 512, "one row per token");
    cr_assert_eq(emb->nbytes, 64 * 512 * 4);
    cr_assert_eq(gguf_tensor_nelements(emb), 64 * 512);
    cr_assert_not_null(gguf_find_tensor(f, "blk.4.ffn_norm.weight"));
    cr_assert_null(gguf_find_tensor(f, "blk.5.ffn_norm.weight"));
    cr_assert_eq(count_tensors_of_type(f, GGML_TYPE_F32), 48);
    check_tensors_inside_file(f);
    gguf_close(f);
}

Test(gguf, reads_qtest_Q4_K_M)
{
    SHARED_FILE_OR_SKIP(path, "models/qtest-Q4_K_M.gguf");
    GgufFile *f = NULL;
    Error err = {{0}};
    cr_assert_eq(gguf_open(&f, path, &err), 0, "%s", err.msg);
    cr_assert_eq(f->n_tensors, 21, "token_embd, output_norm, output + 2 layers x 9");
    const char *arch;
    cr_assert_eq(gguf_get_str(f, "general.architecture", &arch, &err), 0, "%s", err.msg);
    cr_assert_str_eq(arch, "llama");
    uint32_t file_type;
    cr_assert_eq(gguf_get_u32(f, "general.file_type", &file_type, &err), 0, "%s", err.msg);
    cr_assert_eq(file_type, 15, "LLAMA_FTYPE_MOSTLY_Q4_K_M");

    /* The _M mix: Q4_K for most matrices, Q6_K for output and some ffn_down, F32 norms. */
    cr_assert_eq(count_tensors_of_type(f, GGML_TYPE_Q4_K), 13);
    cr_assert_eq(count_tensors_of_type(f, GGML_TYPE_Q6_K), 3);
    cr_assert_eq(count_tensors_of_type(f, GGML_TYPE_F32), 5);

    const GgufTensor *emb = gguf_find_tensor(f, "token_embd.weight");
    cr_assert_not_null(emb);
    cr_assert_eq(emb->type, GGML_TYPE_Q4_K);
    cr_assert_eq(emb->ne[0], 256);
    cr_assert_eq(emb->ne[1], 512);
    cr_assert_eq(emb->nbytes, 512 * 144, "one 256-element Q4_K block per row");
    const GgufTensor *out = gguf_find_tensor(f, "output.weight");
    cr_assert_not_null(out);
    cr_assert_eq(out->type, GGML_TYPE_Q6_K);
    cr_assert_eq(out->nbytes, 512 * 210);
    check_tensors_inside_file(f);
    gguf_close(f);
}

Test(gguf, reads_every_shared_model)
{
    const char *files[] = {
        "models/llama-2-tiny-random.gguf", "models/qtest-f32.gguf",  "models/qtest-F16.gguf",
        "models/qtest-BF16.gguf",          "models/qtest-Q8_0.gguf", "models/qtest-Q4_0.gguf",
        "models/qtest-Q4_1.gguf",          "models/qtest-Q5_0.gguf", "models/qtest-Q5_1.gguf",
        "models/qtest-Q2_K.gguf",          "models/qtest-Q3_K_M.gguf",
        "models/qtest-Q5_K_M.gguf",        "models/qtest-Q6_K.gguf", "models/qtied-Q8_0.gguf",
        "vocab/ggml-vocab-llama-spm.gguf", "vocab/ggml-vocab-gpt-2.gguf",
    };
    size_t n_files = sizeof files / sizeof files[0], opened = 0;
    for (size_t i = 0; i < n_files; i++) {
        SHARED_FILE_OR_SKIP(path, files[i]);
        GgufFile *f = NULL;
        Error err = {{0}};
        cr_assert_eq(gguf_open(&f, path, &err), 0, "%s: %s", files[i], err.msg);
        const char *arch;
        cr_assert_eq(gguf_get_str(f, "general.architecture", &arch, &err), 0, "%s", err.msg);
        check_tensors_inside_file(f);
        if (strncmp(files[i], "models/", 7) == 0)
            cr_assert_not_null(gguf_find_tensor(f, "token_embd.weight"), "%s", files[i]);
        gguf_close(f);
        opened++;
    }
    cr_assert_eq(opened, n_files);
}

/* ---- Truncation: every prefix of a valid file that cuts into what the reader needs ---- */

/* The end of the last tensor's data: the reader needs every byte before it. The padding
 * after the last tensor is optional for the reader (llama.cpp's writer emits it, but a file
 * that stops at the end of its data is still complete). */
static size_t data_end(const GgufFile *f)
{
    uint64_t end = f->data_offset;
    for (uint64_t i = 0; i < f->n_tensors; i++)
        if (f->data_offset + f->tensors[i].offset + f->tensors[i].nbytes > end)
            end = f->data_offset + f->tensors[i].offset + f->tensors[i].nbytes;
    return (size_t)end;
}

static void check_truncations(const uint8_t *bytes, size_t size, size_t stride)
{
    GgufFile *f = NULL;
    Error err = {{0}};
    cr_assert_eq(gguf_parse_buffer(&f, bytes, size, &err), 0, "%s", err.msg);
    size_t needed = data_end(f);
    size_t header_end = (size_t)f->data_offset;
    gguf_close(f);
    /* Cuts into the header and metadata fail in many ways; cuts into the data all fail with
     * "past the end". Sixteen of those are enough, however large the data. */
    size_t data_stride = (needed - header_end) / 16 + 1;
    for (size_t n = 0; n < needed; n += n < header_end ? stride : data_stride)
        expect_rejected_bytes(bytes, n, n < header_end ? "" : "past the end", NULL);
    expect_rejected_bytes(bytes, needed - 1, "past the end", NULL);
    for (size_t n = needed; n <= size; n++) {
        uint8_t *copy = exact_copy(bytes, n);
        cr_assert_eq(gguf_parse_buffer(&f, copy, n, &err), 0, "%zu bytes: %s", n, err.msg);
        gguf_close(f);
        free(copy);
    }
}

Test(gguf, every_truncation_of_a_written_file_is_rejected)
{
    const char *dir = test_make_tmpdir();
    char *meta_path = path_join(dir, "meta.gguf");
    char *tensor_path = path_join(dir, "tensors.gguf");
    uint8_t *data[N_RT_TENSORS];
    write_metadata_file(meta_path);
    write_tensor_file(tensor_path, data, 0);
    const char *paths[] = {meta_path, tensor_path};
    for (int k = 0; k < 2; k++) {
        char *bytes;
        size_t size;
        Error err = {{0}};
        cr_assert_eq(file_read_all(paths[k], &bytes, &size, &err), 0, "%s", err.msg);
        check_truncations((const uint8_t *)bytes, size, 1);
        free(bytes);
        unlink(paths[k]);
    }
    for (size_t i = 0; i < N_RT_TENSORS; i++)
        free(data[i]);
    rmdir(dir);
    free(meta_path);
    free(tensor_path);
}

/* A real file: its 14 KB of metadata is cut at every 7th byte, to keep the test quick. */
Test(gguf, truncations_of_stories260K_are_rejected)
{
    SHARED_FILE_OR_SKIP(path, "models/stories260K.gguf");
    char *bytes;
    size_t size;
    Error err = {{0}};
    cr_assert_eq(file_read_all(path, &bytes, &size, &err), 0, "%s", err.msg);
    check_truncations((const uint8_t *)bytes, size, 7);
    free(bytes);
}

/* Random damage to the header and metadata: whatever the reader decides, it must decide it
 * without crashing or reading outside the buffer, explain a rejection, and never accept a
 * tensor that lies outside the file. A fixed seed keeps failures reproducible. */
Test(gguf, random_corruption_never_crashes)
{
    const char *dir = test_make_tmpdir();
    char *path = path_join(dir, "tensors.gguf");
    uint8_t *data[N_RT_TENSORS];
    write_tensor_file(path, data, 0);
    char *bytes;
    size_t size;
    Error err = {{0}};
    cr_assert_eq(file_read_all(path, &bytes, &size, &err), 0, "%s", err.msg);
    GgufFile *f = NULL;
    cr_assert_eq(gguf_parse_buffer(&f, bytes, size, &err), 0, "%s", err.msg);
    size_t header_end = (size_t)f->data_offset;
    gguf_close(f);

    uint32_t x = 12345;
    int rejected = 0;
    for (int iter = 0; iter < 500; iter++) {
        uint8_t *copy = exact_copy((const uint8_t *)bytes, size);
        err.msg[0] = '\0'; /* each rejection must write its own message */
        for (int k = 0; k <= iter % 3; k++) {
            x = x * 1664525u + 1013904223u;
            size_t at = (x >> 8) % header_end;
            x = x * 1664525u + 1013904223u;
            copy[at] = (x >> 28) < 4 ? 0xff : (uint8_t)(x >> 20);
        }
        int rc = gguf_parse_buffer(&f, copy, size, &err);
        if (rc == 0) {
            for (uint64_t i = 0; i < f->n_tensors; i++) {
                const uint8_t *p = f->tensors[i].data;
                cr_assert(p >= copy && p <= copy + size &&
                          f->tensors[i].nbytes <= (uint64_t)(copy + size - p));
            }
            gguf_close(f);
        } else {
            cr_assert_null(f);
            cr_assert_neq(err.msg[0], '\0', "iteration %d: empty message", iter);
            rejected++;
        }
        free(copy);
    }
    cr_assert_gt(rejected, 100, "only %d of 500 corruptions were rejected", rejected);
    for (size_t i = 0; i < N_RT_TENSORS; i++)
        free(data[i]);
    free(bytes);
    unlink(path);
    rmdir(dir);
    free(path);
}

/* ---- Single spoiled fields ---- */

Test(gguf, accepts_the_hand_assembled_file_and_version_2)
{
    OneTensor s = one_tensor_valid();
    for (uint32_t version = 2; version <= 3; version++) {
        s.version = version;
        Bytes b = one_tensor_file(&s);
        uint8_t *copy;
        GgufFile *f = parse_ok(&b, &copy);
        cr_assert_eq(f->version, version);
        cr_assert_eq(f->data_offset % 32, 0);
        cr_assert_eq(f->tensors[0].nbytes, 32);
        cr_assert_eq(((const uint8_t *)f->tensors[0].data)[5], 5);
        gguf_close(f);
        free(copy);
        free(b.p);
    }
}

Test(gguf, rejects_bad_magic_and_versions)
{
    OneTensor s = one_tensor_valid();
    memcpy(s.magic, "GGUG", 4);
    expect_one_tensor_rejected(&s, "magic", "GGUF");
    s = one_tensor_valid();
    s.version = 1;
    expect_one_tensor_rejected(&s, "version 1", NULL);
    s.version = 4;
    expect_one_tensor_rejected(&s, "version 4", NULL);
    s.version = 0x03000000;
    expect_one_tensor_rejected(&s, "big-endian", NULL);
}

Test(gguf, rejects_huge_counts_before_allocating)
{
    Bytes b = {0};
    bytes_header(&b, 3, 0, UINT64_MAX);
    bytes_kv_u32(&b, "a", 1);
    expect_rejected(&b, "n_kv", NULL);
    free(b.p);

    b = (Bytes){0};
    bytes_header(&b, 3, 1ull << 60, 1);
    bytes_kv_u32(&b, "a", 1);
    expect_rejected(&b, "n_tensors", NULL);
    free(b.p);
}

Test(gguf, rejects_huge_string_lengths)
{
    Bytes b = {0};
    bytes_header(&b, 3, 0, 1);
    bytes_u64(&b, UINT64_MAX); /* key length */
    bytes_put(&b, "key\0\0\0\0\0\0\0\0\0\0\0\0\0", 16);
    expect_rejected(&b, "key-value pair 0", "truncated");
    free(b.p);

    b = (Bytes){0};
    bytes_header(&b, 3, 0, 1);
    bytes_str(&b, "general.name");
    bytes_u32(&b, GGUF_TYPE_STRING);
    bytes_u64(&b, 1ull << 62);
    bytes_put(&b, "abc", 3);
    expect_rejected(&b, "key 'general.name'", "truncated");
    free(b.p);

    /* An array whose count cannot fit in the rest of the file. */
    b = (Bytes){0};
    bytes_header(&b, 3, 0, 1);
    bytes_str(&b, "tokenizer.ggml.scores");
    bytes_u32(&b, GGUF_TYPE_ARRAY);
    bytes_u32(&b, GGUF_TYPE_FLOAT32);
    bytes_u64(&b, 1ull << 62);
    bytes_u32(&b, 0);
    expect_rejected(&b, "'tokenizer.ggml.scores'", "does not fit");
    free(b.p);

    b = (Bytes){0};
    bytes_header(&b, 3, 0, 1);
    bytes_str(&b, "tokenizer.ggml.tokens");
    bytes_u32(&b, GGUF_TYPE_ARRAY);
    bytes_u32(&b, GGUF_TYPE_STRING);
    bytes_u64(&b, UINT64_MAX / 2);
    bytes_str(&b, "<unk>");
    expect_rejected(&b, "'tokenizer.ggml.tokens'", "strings");
    free(b.p);

    /* The second string of an array runs past the end. */
    b = (Bytes){0};
    bytes_header(&b, 3, 0, 1);
    bytes_str(&b, "tokenizer.ggml.tokens");
    bytes_u32(&b, GGUF_TYPE_ARRAY);
    bytes_u32(&b, GGUF_TYPE_STRING);
    bytes_u64(&b, 2);
    bytes_str(&b, "<unk>");
    bytes_u64(&b, 100);
    bytes_put(&b, "<s>", 3);
    expect_rejected(&b, "element 1", "truncated");
    free(b.p);
}

Test(gguf, rejects_bad_value_types)
{
    Bytes b = {0};
    bytes_header(&b, 3, 0, 1);
    bytes_str(&b, "nested");
    bytes_u32(&b, GGUF_TYPE_ARRAY);
    bytes_u32(&b, GGUF_TYPE_ARRAY);
    bytes_u64(&b, 1);
    bytes_u32(&b, GGUF_TYPE_UINT8);
    bytes_u64(&b, 1);
    bytes_uint(&b, 0, 1);
    expect_rejected(&b, "'nested'", "nested arrays");
    free(b.p);

    b = (Bytes){0};
    bytes_header(&b, 3, 0, 1);
    bytes_str(&b, "odd");
    bytes_u32(&b, 13);
    bytes_u32(&b, 0);
    expect_rejected(&b, "'odd'", "unknown value type 13");
    free(b.p);

    b = (Bytes){0};
    bytes_header(&b, 3, 0, 1);
    bytes_str(&b, "odd.array");
    bytes_u32(&b, GGUF_TYPE_ARRAY);
    bytes_u32(&b, 77);
    bytes_u64(&b, 0);
    expect_rejected(&b, "'odd.array'", "unknown array element type 77");
    free(b.p);
}

Test(gguf, rejects_duplicate_and_malformed_keys)
{
    Bytes b = {0};
    bytes_header(&b, 3, 0, 3);
    bytes_kv_u32(&b, "llama.block_count", 1);
    bytes_kv_str(&b, "general.name", "x");
    bytes_kv_u32(&b, "llama.block_count", 2);
    expect_rejected(&b, "duplicate key 'llama.block_count'", NULL);
    free(b.p);

    b = (Bytes){0};
    bytes_header(&b, 3, 0, 1);
    bytes_u64(&b, 3);
    bytes_put(&b, "a\0b", 3);
    bytes_u32(&b, GGUF_TYPE_UINT8);
    bytes_uint(&b, 1, 1);
    expect_rejected(&b, "NUL", NULL);
    free(b.p);

    b = (Bytes){0};
    bytes_header(&b, 3, 0, 1);
    bytes_kv_u32(&b, "", 1);
    expect_rejected(&b, "empty", NULL);
    free(b.p);
}

Test(gguf, rejects_bad_alignment)
{
    const uint32_t bad[] = {0, 48, 33, 0x80000001u};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        Bytes b = {0};
        bytes_header(&b, 3, 0, 1);
        bytes_kv_u32(&b, "general.alignment", bad[i]);
        expect_rejected(&b, "general.alignment", "power of two");
        free(b.p);
    }
    Bytes b = {0};
    bytes_header(&b, 3, 0, 1);
    bytes_str(&b, "general.alignment");
    bytes_u32(&b, GGUF_TYPE_UINT64);
    bytes_u64(&b, 32);
    expect_rejected(&b, "general.alignment", "must be a u32");
    free(b.p);
}

/* general.alignment = 64 moves the data start and makes 32 a misaligned offset. */
Test(gguf, honours_general_alignment)
{
    uint64_t ne[1] = {8};
    for (int misaligned = 0; misaligned <= 1; misaligned++) {
        Bytes b = {0};
        bytes_header(&b, 3, 1, 1);
        bytes_kv_u32(&b, "general.alignment", 64);
        bytes_tensor_info(&b, "t", 1, ne, GGML_TYPE_F32, misaligned ? 32 : 64);
        bytes_pad(&b, 64);
        for (int i = 0; i < 128; i++)
            bytes_uint(&b, (uint64_t)i, 1);
        if (misaligned) {
            expect_rejected(&b, "tensor 't': offset 32 is not a multiple of the alignment 64",
                            NULL);
        } else {
            uint8_t *copy;
            GgufFile *f = parse_ok(&b, &copy);
            cr_assert_eq(f->alignment, 64);
            cr_assert_eq(f->data_offset % 64, 0);
            cr_assert_eq(((const uint8_t *)f->tensors[0].data)[0], 64);
            gguf_close(f);
            free(copy);
        }
        free(b.p);
    }
}

Test(gguf, rejects_bad_tensor_infos)
{
    OneTensor s = one_tensor_valid();
    s.n_dims = 5;
    expect_one_tensor_rejected(&s, "tensor 't'", "n_dims is 5");
    s = one_tensor_valid();
    s.n_dims = 0;
    expect_one_tensor_rejected(&s, "tensor 't'", "n_dims is 0");
    s = one_tensor_valid();
    s.ne[1] = 0;
    expect_one_tensor_rejected(&s, "tensor 't'", "ne[1] is 0");
    s = one_tensor_valid();
    s.ne[0] = 1ull << 32;
    s.ne[1] = 1ull << 32;
    expect_one_tensor_rejected(&s, "tensor 't'", "overflow");
    s = one_tensor_valid();
    s.type = 99;
    expect_one_tensor_rejected(&s, "tensor 't'", "unknown tensor type 99");
    s = one_tensor_valid();
    s.type = 4; /* Q4_2, removed from ggml */
    expect_one_tensor_rejected(&s, "tensor 't'", "unknown tensor type 4");
    s = one_tensor_valid();
    s.type = GGML_TYPE_Q4_0;
    s.ne[0] = 48;
    expect_one_tensor_rejected(&s, "tensor 't'", "not a multiple of the Q4_0 block size 32");
}

Test(gguf, rejects_bad_offsets)
{
    OneTensor s = one_tensor_valid();
    s.offset = 100;
    expect_one_tensor_rejected(&s, "tensor 't': offset 100 is not a multiple of the alignment 32",
                               NULL);
    s = one_tensor_valid();
    s.offset = 32; /* aligned, but the 32 bytes of data end at 64 while the file has 32 */
    expect_one_tensor_rejected(&s, "tensor 't'", "past the end");
    s = one_tensor_valid();
    s.offset = UINT64_MAX - 31; /* a multiple of 32 whose end would wrap around */
    expect_one_tensor_rejected(&s, "tensor 't'", "past the end");
    s = one_tensor_valid();
    s.data_bytes = 31;
    expect_one_tensor_rejected(&s, "tensor 't'", "past the end");
}

Test(gguf, rejects_duplicate_and_empty_tensor_names)
{
    uint64_t ne[1] = {8};
    Bytes b = {0};
    bytes_header(&b, 3, 2, 0);
    bytes_tensor_info(&b, "w", 1, ne, GGML_TYPE_F32, 0);
    bytes_tensor_info(&b, "w", 1, ne, GGML_TYPE_F32, 32);
    bytes_pad(&b, 32);
    for (int i = 0; i < 64; i++)
        bytes_uint(&b, 0, 1);
    expect_rejected(&b, "duplicate tensor name 'w'", NULL);
    free(b.p);

    b = (Bytes){0};
    bytes_header(&b, 3, 1, 0);
    bytes_tensor_info(&b, "", 1, ne, GGML_TYPE_F32, 0);
    bytes_pad(&b, 32);
    for (int i = 0; i < 32; i++)
        bytes_uint(&b, 0, 1);
    expect_rejected(&b, "tensor 0", "empty");
    free(b.p);
}

/* Finds needle in the first n bytes of hay; the offset, or -1. */
static long find_bytes(const uint8_t *hay, size_t n, const char *needle)
{
    size_t len = strlen(needle);
    for (size_t i = 0; i + len <= n; i++)
        if (memcmp(hay + i, needle, len) == 0)
            return (long)i;
    return -1;
}

/* Spoiled copies of a real file, opened from disk: the message starts with the path. */
Test(gguf, spoiled_copies_of_stories260K_name_file_and_field)
{
    SHARED_FILE_OR_SKIP(src, "models/stories260K.gguf");
    char *bytes;
    size_t size;
    Error err = {{0}};
    cr_assert_eq(file_read_all(src, &bytes, &size, &err), 0, "%s", err.msg);
    const char *dir = test_make_tmpdir();
    char *path = path_join(dir, "x.gguf");
    char expected[600];

    /* The first tensor info: u64 name length 17, "token_embd.weight", n_dims 2, ne[2], type. */
    long name = find_bytes((const uint8_t *)bytes, size, "token_embd.weight");
    cr_assert_geq(name, 8);
    cr_assert_eq(bytes[name - 8], 17);
    size_t type_at = (size_t)name + 17 + 4 + 16;
    char *spoiled = malloc(size);
    cr_assert_not_null(spoiled);
    memcpy(spoiled, bytes, size);
    spoiled[type_at] = 99;
    cr_assert_eq(file_write_atomic(path, spoiled, size, &err), 0, "%s", err.msg);
    GgufFile *f = (GgufFile *)1;
    cr_assert_eq(gguf_open(&f, path, &err), -1);
    cr_assert_null(f);
    snprintf(expected, sizeof expected, "%s: tensor 'token_embd.weight': unknown tensor type 99",
             path);
    cr_assert_eq(strncmp(err.msg, expected, strlen(expected)), 0, "got: %s", err.msg);

    /* The first key's length (bytes 24..31) made enormous. */
    memcpy(spoiled, bytes, size);
    memset(spoiled + 24, 0xff, 8);
    cr_assert_eq(file_write_atomic(path, spoiled, size, &err), 0, "%s", err.msg);
    cr_assert_eq(gguf_open(&f, path, &err), -1);
    cr_assert(strstr(err.msg, path) == err.msg && strstr(err.msg, "truncated"), "%s", err.msg);

    /* The first tensor's offset moved off the alignment. */
    memcpy(spoiled, bytes, size);
    spoiled[type_at + 4] = 100;
    cr_assert_eq(file_write_atomic(path, spoiled, size, &err), 0, "%s", err.msg);
    cr_assert_eq(gguf_open(&f, path, &err), -1);
    snprintf(expected, sizeof expected,
             "%s: tensor 'token_embd.weight': offset 100 is not a multiple of the alignment 32",
             path);
    cr_assert_str_eq(err.msg, expected);

    free(spoiled);
    free(bytes);
    unlink(path);
    rmdir(dir);
    free(path);
}

Test(gguf, open_reports_missing_empty_and_non_regular_files)
{
    const char *dir = test_make_tmpdir();
    char *missing = path_join(dir, "missing.gguf");
    char *empty = path_join(dir, "empty.gguf");
    GgufFile *f = (GgufFile *)1;
    Error err = {{0}};
    cr_assert_eq(gguf_open(&f, missing, &err), -1);
    cr_assert_null(f);
    cr_assert(strstr(err.msg, missing) && strstr(err.msg, "No such file"), "%s", err.msg);

    cr_assert_eq(file_write_atomic(empty, "", 0, &err), 0, "%s", err.msg);
    cr_assert_eq(gguf_open(&f, empty, &err), -1);
    cr_assert(strstr(err.msg, empty) && strstr(err.msg, "empty"), "%s", err.msg);

    cr_assert_eq(gguf_open(&f, dir, &err), -1);
    cr_assert(strstr(err.msg, "not a regular file"), "%s", err.msg);

    cr_assert_eq(gguf_parse_buffer(&f, NULL, 0, &err), -1);
    cr_assert(strstr(err.msg, "truncated"), "%s", err.msg);
    gguf_close(NULL);

    unlink(empty);
    rmdir(dir);
    free(missing);
    free(empty);
}

/* A vocabulary-only file (no tensors) may end right after its metadata. */
Test(gguf, accepts_a_file_without_tensors_or_padding)
{
    Bytes b = {0};
    bytes_header(&b, 3, 0, 1);
    bytes_kv_str(&b, "general.architecture", "llama");
    uint8_t *copy;
    GgufFile *f = parse_ok(&b, &copy);
    cr_assert_eq(f->n_tensors, 0);
    cr_assert_eq(f->data_offset % 32, 0);
    cr_assert_null(gguf_find_tensor(f, "anything"));
    gguf_close(f);
    free(copy);
    free(b.p);
}

/* GGUF reader and writer. gguf.h has the API and the layout in brief; docs/formats.md has
 * the byte-level description.
 *
 * The reader never trusts the file. Every number that comes out of it is a
 * claim to be checked before it is used: a count before memory is allocated for it, a length
 * before bytes are copied, an offset before a pointer is formed. All of it goes through one
 * cursor that knows how many bytes are left, so no code path can read past the end. */
#include "gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buffer.h"
#include "fileio.h"
#include "hash.h"

#define GGUF_MAGIC "GGUF"
#define GGUF_WRITE_VERSION 3
#define GGUF_KEY_ALIGNMENT "general.alignment"

/* llama.cpp keeps a tensor name in a char[64] (GGML_MAX_NAME) and refuses longer names, so
 * the writer does too: a file quill writes must load there. */
#define GGUF_MAX_TENSOR_NAME 63

/* The smallest number of bytes one entry can take in the file. A count read from the header
 * is compared with (bytes left) / (smallest entry) before anything is allocated: a 100-byte
 * file that claims 2^60 key-value pairs is rejected on the spot instead of asking malloc for
 * exabytes (or, worse, getting a smaller block after the multiplication wraps around).
 *   key-value pair: key length u64 + empty key + value type u32 + a 1-byte value = 13
 *   tensor info:    name length u64 + empty name + n_dims u32 + one ne u64 + type u32
 *                   + offset u64 = 32
 *   string:         its length u64 = 8 */
#define GGUF_MIN_KV_BYTES 13
#define GGUF_MIN_TENSOR_INFO_BYTES 32
#define GGUF_MIN_STRING_BYTES 8

/* ---- Type tables ---- */

typedef struct {
    const char *name;    /* as gguf-py and llama-quantize spell it */
    uint64_t block_size; /* elements per block */
    uint64_t type_size;  /* bytes per block */
} TensorTypeInfo;

/* ggml's block layouts (ggml-common.h). A quantised type stores blocks of weights together
 * with the scales that decode them; the byte counts follow from the block structs, e.g.
 * Q4_0 = one f16 scale + 32 four-bit values = 2 + 16 = 18 bytes. The K-quants group 256
 * weights into a super-block whose sub-block scales are themselves quantised. */
static const TensorTypeInfo tensor_types[] = {
    [GGML_TYPE_F32] = {"F32", 1, 4},
    [GGML_TYPE_F16] = {"F16", 1, 2},
    [GGML_TYPE_Q4_0] = {"Q4_0", 32, 18},   /* f16 d + 16 bytes of nibbles */
    [GGML_TYPE_Q4_1] = {"Q4_1", 32, 20},   /* f16 d, m + 16 bytes of nibbles */
    [GGML_TYPE_Q5_0] = {"Q5_0", 32, 22},   /* f16 d + 4 bytes of fifth bits + 16 */
    [GGML_TYPE_Q5_1] = {"Q5_1", 32, 24},   /* f16 d, m + 4 + 16 */
    [GGML_TYPE_Q8_0] = {"Q8_0", 32, 34},   /* f16 d + 32 int8 */
    [GGML_TYPE_Q8_1] = {"Q8_1", 32, 36},   /* f16 d, s + 32 int8 */
    [GGML_TYPE_Q2_K] = {"Q2_K", 256, 84},  /* 16 scale bytes + 64 quant bytes + f16 d, dmin */
    [GGML_TYPE_Q3_K] = {"Q3_K", 256, 110}, /* 32 high-bit + 64 quant + 12 scale + f16 d */
    [GGML_TYPE_Q4_K] = {"Q4_K", 256, 144}, /* f16 d, dmin + 12 scale + 128 quant */
    [GGML_TYPE_Q5_K] = {"Q5_K", 256, 176}, /* as Q4_K + 32 bytes of fifth bits */
    [GGML_TYPE_Q6_K] = {"Q6_K", 256, 210}, /* 128 low + 64 high + 16 scale + f16 d */
    [GGML_TYPE_Q8_K] = {"Q8_K", 256, 292}, /* f32 d + 256 int8 + 16 int16 block sums */
    [GGML_TYPE_BF16] = {"BF16", 1, 2},
};

#define N_TENSOR_TYPES (sizeof tensor_types / sizeof tensor_types[0])

static const TensorTypeInfo *tensor_type_info(uint32_t type)
{
    if (type >= N_TENSOR_TYPES || !tensor_types[type].name)
        return NULL;
    return &tensor_types[type];
}

const char *gguf_tensor_type_name(uint32_t type)
{
    const TensorTypeInfo *info = tensor_type_info(type);
    return info ? info->name : NULL;
}

int gguf_tensor_type_layout(uint32_t type, uint64_t *block_size, uint64_t *type_size)
{
    const TensorTypeInfo *info = tensor_type_info(type);
    if (!info)
        return -1;
    if (block_size)
        *block_size = info->block_size;
    if (type_size)
        *type_size = info->type_size;
    return 0;
}

static const char *const value_type_names[] = {
    "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64",
};

/* Bytes of one value in the file; 0 for the two variable-length types. */
static const uint8_t value_type_sizes[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

static bool value_type_is_known(uint32_t type)
{
    return type <= GGUF_TYPE_FLOAT64;
}

static bool value_type_is_unsigned(GgufType type)
{
    return type == GGUF_TYPE_UINT8 || type == GGUF_TYPE_UINT16 || type == GGUF_TYPE_UINT32 ||
           type == GGUF_TYPE_UINT64;
}

static bool value_type_is_signed(GgufType type)
{
    return type == GGUF_TYPE_INT8 || type == GGUF_TYPE_INT16 || type == GGUF_TYPE_INT32 ||
           type == GGUF_TYPE_INT64;
}

const char *gguf_type_name(GgufType type)
{
    return value_type_is_known(type) ? value_type_names[type] : "unknown";
}

/* ---- Byte order ----
 * GGUF is little-endian whatever the host is. Values are assembled byte by byte, so the code
 * is right on any host and never makes an unaligned load. Native values are moved through
 * memcpy, the one well-defined way to reinterpret bits (float <-> u32, i16 <-> u16). */

static uint64_t le_load(const uint8_t *p, size_t size)
{
    uint64_t v = 0;
    for (size_t i = 0; i < size; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static void le_store64(uint8_t p[8], uint64_t v)
{
    for (size_t i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* Stores the low `size` bytes of bits as one native element of that size. */
static void native_store(void *dst, uint64_t bits, size_t size)
{
    uint8_t u8 = (uint8_t)bits;
    uint16_t u16 = (uint16_t)bits;
    uint32_t u32 = (uint32_t)bits;
    switch (size) {
    case 1: memcpy(dst, &u8, 1); break;
    case 2: memcpy(dst, &u16, 2); break;
    case 4: memcpy(dst, &u32, 4); break;
    default: memcpy(dst, &bits, 8); break;
    }
}

static uint64_t native_load(const void *src, size_t size)
{
    uint8_t u8;
    uint16_t u16;
    uint32_t u32;
    uint64_t u64;
    switch (size) {
    case 1: memcpy(&u8, src, 1); return u8;
    case 2: memcpy(&u16, src, 2); return u16;
    case 4: memcpy(&u32, src, 4); return u32;
    default: memcpy(&u64, src, 8); return u64;
    }
}

/* Sign-extends a two's-complement value of `size` bytes. Going through the exact-width signed
 * types avoids the implementation-defined conversion of a large unsigned value to int64_t. */
static int64_t bits_to_signed(uint64_t bits, size_t size)
{
    int8_t i8;
    int16_t i16;
    int32_t i32;
    int64_t i64;
    switch (size) {
    case 1: native_store(&i8, bits, 1); return i8;
    case 2: native_store(&i16, bits, 2); return i16;
    case 4: native_store(&i32, bits, 4); return i32;
    default: native_store(&i64, bits, 8); return i64;
    }
}

/* ---- Metadata values in memory ---- */

static void kv_free(GgufKV *kv)
{
    free(kv->key);
    if (kv->type == GGUF_TYPE_STRING)
        free(kv->value.s);
    if (kv->type == GGUF_TYPE_ARRAY && kv->elem_type == GGUF_TYPE_STRING && kv->array) {
        char **strs = kv->array;
        for (uint64_t i = 0; i < kv->n; i++)
            free(strs[i]);
    }
    free(kv->array);
}

/* Widens the raw bits of a fixed-size scalar into kv->value (see GgufKV). */
static void kv_set_scalar_bits(GgufKV *kv, uint64_t bits)
{
    size_t size = value_type_sizes[kv->type];
    float f32;
    double f64;
    if (kv->type == GGUF_TYPE_BOOL) {
        kv->value.u = bits != 0;
    } else if (value_type_is_signed(kv->type)) {
        kv->value.i = bits_to_signed(bits, size);
    } else if (kv->type == GGUF_TYPE_FLOAT32) {
        native_store(&f32, bits, 4);
        kv->value.f = f32;
    } else if (kv->type == GGUF_TYPE_FLOAT64) {
        native_store(&f64, bits, 8);
        kv->value.f = f64;
    } else {
        kv->value.u = bits;
    }
}

/* The inverse of kv_set_scalar_bits: the bits the file stores (the low `size` bytes count).
 * Converting a negative int64_t to uint64_t is defined as modulo 2^64, which leaves exactly
 * the two's-complement bytes the file wants. */
static uint64_t kv_scalar_bits(const GgufKV *kv)
{
    float f32;
    if (value_type_is_signed(kv->type))
        return (uint64_t)kv->value.i;
    if (kv->type == GGUF_TYPE_FLOAT32) {
        f32 = (float)kv->value.f;
        return native_load(&f32, 4);
    }
    if (kv->type == GGUF_TYPE_FLOAT64)
        return native_load(&kv->value.f, 8);
    return kv->value.u;
}

/* ---- The cursor: the only code that touches the file's bytes ---- */

typedef struct {
    const uint8_t *data;
    size_t size;
    size_t pos; /* always <= size */
} GgufCursor;

static size_t cursor_left(const GgufCursor *c)
{
    return c->size - c->pos;
}

/* Hands out the next n bytes, or fails without moving when fewer are left. n is 64-bit so
 * that a length straight from the file is compared before it is narrowed to size_t. The cursor
 * functions set their outputs even on failure (NULL, 0), so no caller can see garbage. */
static int cursor_take(GgufCursor *c, uint64_t n, const char *what, const uint8_t **out,
                       Error *err)
{
    *out = NULL;
    if (n > cursor_left(c))
        return error_set(err, "truncated: %s needs %" PRIu64 " bytes at offset %zu, only %zu left",
                         what, n, c->pos, cursor_left(c));
    *out = c->data + c->pos;
    c->pos += (size_t)n;
    return 0;
}

static int cursor_read_uint(GgufCursor *c, size_t size, const char *what, uint64_t *out,
                            Error *err)
{
    const uint8_t *p;
    *out = 0;
    if (cursor_take(c, size, what, &p, err) != 0)
        return -1;
    *out = le_load(p, size);
    return 0;
}

static int cursor_read_u32(GgufCursor *c, const char *what, uint32_t *out, Error *err)
{
    uint64_t v;
    int rc = cursor_read_uint(c, 4, what, &v, err);
    *out = (uint32_t)v;
    return rc;
}

static int cursor_read_u64(GgufCursor *c, const char *what, uint64_t *out, Error *err)
{
    return cursor_read_uint(c, 8, what, out, err);
}

/* Reads a string (u64 length + bytes) into a fresh NUL-terminated copy. The bytes are taken
 * from the cursor before malloc, so a forged length fails as "truncated" instead of asking for
 * a huge allocation; and because it is then below the file size, len + 1 cannot wrap. */
static int cursor_read_string(GgufCursor *c, const char *what, char **out, uint64_t *out_len,
                              Error *err)
{
    uint64_t len;
    const uint8_t *bytes;
    *out = NULL;
    if (cursor_read_u64(c, what, &len, err) != 0 || cursor_take(c, len, what, &bytes, err) != 0)
        return -1;
    char *s = malloc((size_t)len + 1);
    if (!s)
        return error_set(err, "%s: out of memory for %" PRIu64 " bytes", what, len);
    memcpy(s, bytes, (size_t)len);
    s[len] = '\0';
    *out = s;
    if (out_len)
        *out_len = len;
    return 0;
}

/* Keys and tensor names are looked up with strcmp, so a NUL inside one would make two
 * different names compare equal (or hide part of a name); they must be non-empty and NUL-free. */
static bool name_is_clean(const char *name, uint64_t len)
{
    return len > 0 && strlen(name) == len;
}

/* ---- Reader: metadata ---- */

static int kv_read_number_array(GgufCursor *c, GgufKV *kv, Error *err)
{
    size_t size = value_type_sizes[kv->elem_type];
    if (kv->n > cursor_left(c) / size)
        return error_set(err, "array of %" PRIu64 " %s values does not fit in the %zu bytes left",
                         kv->n, gguf_type_name(kv->elem_type), cursor_left(c));
    size_t n = (size_t)kv->n;
    /* At least one byte, so that `array` is never NULL, not even for an empty array. */
    uint8_t *dst = malloc(n ? n * size : 1);
    if (!dst)
        return error_set(err, "out of memory for an array of %zu values", n);
    kv->array = dst;
    const uint8_t *src;
    if (cursor_take(c, (uint64_t)n * size, "array", &src, err) != 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        uint64_t bits = le_load(src + i * size, size);
        if (kv->elem_type == GGUF_TYPE_BOOL)
            bits = bits != 0;
        native_store(dst + i * size, bits, size);
    }
    return 0;
}

static int kv_read_string_array(GgufCursor *c, GgufKV *kv, Error *err)
{
    if (kv->n > cursor_left(c) / GGUF_MIN_STRING_BYTES)
        return error_set(err, "array of %" PRIu64 " strings does not fit in the %zu bytes left",
                         kv->n, cursor_left(c));
    size_t n = (size_t)kv->n;
    /* calloc: the slots not yet read stay NULL, so kv_free can run at any point. */
    char **strs = calloc(n ? n : 1, sizeof *strs);
    if (!strs)
        return error_set(err, "out of memory for an array of %zu strings", n);
    kv->array = strs;
    for (size_t i = 0; i < n; i++)
        if (cursor_read_string(c, "array string", &strs[i], NULL, err) != 0)
            return error_prefix(err, "element %zu", i);
    return 0;
}

static int kv_read_array(GgufCursor *c, GgufKV *kv, Error *err)
{
    uint32_t elem_type;
    if (cursor_read_u32(c, "array element type", &elem_type, err) != 0 ||
        cursor_read_u64(c, "array count", &kv->n, err) != 0)
        return -1;
    if (elem_type == GGUF_TYPE_ARRAY)
        return error_set(err, "nested arrays are not supported");
    if (!value_type_is_known(elem_type))
        return error_set(err, "unknown array element type %" PRIu32, elem_type);
    kv->elem_type = (GgufType)elem_type;
    if (kv->elem_type == GGUF_TYPE_STRING)
        return kv_read_string_array(c, kv, err);
    return kv_read_number_array(c, kv, err);
}

static int kv_read_value(GgufCursor *c, GgufKV *kv, Error *err)
{
    uint32_t type;
    if (cursor_read_u32(c, "value type", &type, err) != 0)
        return -1;
    if (!value_type_is_known(type))
        return error_set(err, "unknown value type %" PRIu32, type);
    kv->type = (GgufType)type;
    if (kv->type == GGUF_TYPE_ARRAY)
        return kv_read_array(c, kv, err);
    kv->elem_type = kv->type;
    kv->n = 1;
    if (kv->type == GGUF_TYPE_STRING)
        return cursor_read_string(c, "string value", &kv->value.s, NULL, err);
    uint64_t bits;
    if (cursor_read_uint(c, value_type_sizes[kv->type], "value", &bits, err) != 0)
        return -1;
    kv_set_scalar_bits(kv, bits);
    return 0;
}

static int kv_read(GgufCursor *c, GgufKV *kv, uint64_t index, Error *err)
{
    uint64_t len;
    if (cursor_read_string(c, "key", &kv->key, &len, err) != 0)
        return error_prefix(err, "key-value pair %" PRIu64, index);
    if (!name_is_clean(kv->key, len))
        return error_set(err, "key-value pair %" PRIu64 ": the key is empty or contains a NUL byte",
                         index);
    if (kv_read_value(c, kv, err) != 0)
        return error_prefix(err, "key '%s'", kv->key);
    return 0;
}

/* ---- Reader: header, tensor infos, data ---- */

static int gguf_check_version(uint32_t version, Error *err)
{
    uint32_t swapped = (version >> 24) | ((version >> 8) & 0xff00) | ((version << 8) & 0xff0000) |
                       (version << 24);
    if (version == 2 || version == 3)
        return 0;
    if (version == 1)
        return error_set(err, "GGUF version 1 is not supported (it used 32-bit counts); "
                              "quill reads versions 2 and 3");
    if (swapped == 2 || swapped == 3)
        return error_set(err, "version field %" PRIu32 " looks like a big-endian GGUF file, "
                              "which quill does not read", version);
    return error_set(err, "unsupported GGUF version %" PRIu32 " (quill reads versions 2 and 3)",
                     version);
}

/* Reads magic, version and the two counts, and allocates the key-value table. Both counts
 * are checked against the bytes left before anything is allocated (see GGUF_MIN_KV_BYTES). */
static int gguf_read_header(GgufCursor *c, GgufFile *f, uint64_t *n_tensors, Error *err)
{
    const uint8_t *m;
    uint64_t n_kv;
    if (cursor_take(c, 4, "magic", &m, err) != 0)
        return -1;
    if (memcmp(m, GGUF_MAGIC, 4) != 0)
        return error_set(err, "not a GGUF file: the magic is %02x %02x %02x %02x, "
                              "expected \"GGUF\"", m[0], m[1], m[2], m[3]);
    if (cursor_read_u32(c, "version", &f->version, err) != 0 ||
        gguf_check_version(f->version, err) != 0 ||
        cursor_read_u64(c, "n_tensors", n_tensors, err) != 0 ||
        cursor_read_u64(c, "n_kv", &n_kv, err) != 0)
        return -1;
    size_t left = cursor_left(c);
    if (n_kv > left / GGUF_MIN_KV_BYTES)
        return error_set(err, "n_kv is %" PRIu64 ", but the %zu bytes left hold at most %zu "
                              "key-value pairs", n_kv, left, left / GGUF_MIN_KV_BYTES);
    left -= (size_t)n_kv * GGUF_MIN_KV_BYTES;
    if (*n_tensors > left / GGUF_MIN_TENSOR_INFO_BYTES)
        return error_set(err, "n_tensors is %" PRIu64 ", but the bytes left after the metadata "
                              "hold at most %zu tensor infos", *n_tensors,
                         left / GGUF_MIN_TENSOR_INFO_BYTES);
    if (n_kv > 0) {
        f->kv = calloc((size_t)n_kv, sizeof *f->kv);
        if (!f->kv)
            return error_set(err, "out of memory for %" PRIu64 " key-value pairs", n_kv);
        f->n_kv = n_kv;
    }
    return 0;
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Returns a name that occurs twice in names[0..n), or NULL; reorders names. Sorting makes
 * this O(n log n): a hostile file with a million keys costs milliseconds, where comparing
 * every pair would cost hours. */
static const char *names_find_duplicate(const char **names, size_t n)
{
    qsort(names, n, sizeof *names, compare_names);
    for (size_t i = 1; i < n; i++)
        if (strcmp(names[i - 1], names[i]) == 0)
            return names[i];
    return NULL;
}

static int gguf_check_unique_keys(const GgufFile *f, Error *err)
{
    if (f->n_kv < 2)
        return 0;
    const char **names = malloc((size_t)f->n_kv * sizeof *names);
    if (!names)
        return error_set(err, "out of memory checking keys");
    for (uint64_t i = 0; i < f->n_kv; i++)
        names[i] = f->kv[i].key;
    const char *dup = names_find_duplicate(names, (size_t)f->n_kv);
    int rc = dup ? error_set(err, "duplicate key '%s'", dup) : 0;
    free(names);
    return rc;
}

static int compare_tensor_names(const void *a, const void *b)
{
    return strcmp((*(GgufTensor *const *)a)->name, (*(GgufTensor *const *)b)->name);
}

/* Sorts the tensors by name into f->tensors_by_name, which makes gguf_find_tensor a binary
 * search (a loader looks up every tensor, and a hostile file may have millions), and
 * rejects a name that occurs twice: equal names are neighbours once sorted. */
static int gguf_index_tensor_names(GgufFile *f, Error *err)
{
    if (f->n_tensors == 0)
        return 0;
    f->tensors_by_name = malloc((size_t)f->n_tensors * sizeof *f->tensors_by_name);
    if (!f->tensors_by_name)
        return error_set(err, "out of memory indexing tensor names");
    for (uint64_t i = 0; i < f->n_tensors; i++)
        f->tensors_by_name[i] = &f->tensors[i];
    qsort(f->tensors_by_name, (size_t)f->n_tensors, sizeof *f->tensors_by_name,
          compare_tensor_names);
    for (uint64_t i = 1; i < f->n_tensors; i++)
        if (strcmp(f->tensors_by_name[i - 1]->name, f->tensors_by_name[i]->name) == 0)
            return error_set(err, "duplicate tensor name '%s'", f->tensors_by_name[i]->name);
    return 0;
}

/* general.alignment moves every tensor boundary, so a bad value would misplace all the data:
 * it must be a u32 (the only form llama.cpp reads) and a power of two (so that padding is
 * well defined and mmapped data can be aligned for SIMD loads). */
static int alignment_check(const GgufKV *kv, Error *err)
{
    if (kv->type != GGUF_TYPE_UINT32)
        return error_set(err, "key '%s': must be a u32, not %s", kv->key, gguf_type_name(kv->type));
    if (kv->value.u == 0 || (kv->value.u & (kv->value.u - 1)) != 0)
        return error_set(err, "key '%s': %" PRIu64 " is not a power of two", kv->key, kv->value.u);
    return 0;
}

static int gguf_resolve_alignment(GgufFile *f, Error *err)
{
    const GgufKV *kv = gguf_find_kv(f, GGUF_KEY_ALIGNMENT);
    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    if (!kv)
        return 0;
    if (alignment_check(kv, err) != 0)
        return -1;
    f->alignment = kv->value.u;
    return 0;
}

static int tensor_check_n_dims(uint32_t n_dims, Error *err)
{
    if (n_dims < 1 || n_dims > GGUF_MAX_DIMS)
        return error_set(err, "n_dims is %" PRIu32 ", must be 1 to %d", n_dims, GGUF_MAX_DIMS);
    return 0;
}

/* Checks that a shape and type describe a tensor that ggml can hold, and computes its size.
 * ggml counts elements in int64_t, so the product of the dimensions must stay below 2^63;
 * each multiplication is checked before it is done, because after an overflow the wrapped
 * product can look perfectly reasonable. ne has GGUF_MAX_DIMS entries. */
static int tensor_compute_nbytes(uint32_t type, uint32_t n_dims, const uint64_t *ne,
                                 uint64_t *nbytes, Error *err)
{
    const TensorTypeInfo *info = tensor_type_info(type);
    if (!info)
        return error_set(err, "unknown tensor type %" PRIu32 " (quill knows F32, F16, BF16, "
                              "Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1 and Q2_K..Q8_K)", type);
    if (tensor_check_n_dims(n_dims, err) != 0)
        return -1;
    uint64_t count = 1;
    for (uint32_t j = 0; j < n_dims; j++) {
        /* llama.cpp accepts empty (0-sized) dimensions; no model has one, and quill's code
         * can then rely on every tensor having at least one element. */
        if (ne[j] == 0)
            return error_set(err, "dimension ne[%" PRIu32 "] is 0", j);
        if (ne[j] > (uint64_t)INT64_MAX / count)
            return error_set(err, "shape overflows: more than 2^63 - 1 elements");
        count *= ne[j];
    }
    /* A block never straddles two rows, so a row must hold a whole number of blocks. */
    if (ne[0] % info->block_size != 0)
        return error_set(err, "ne[0] = %" PRIu64 " is not a multiple of the %s block size %" PRIu64,
                         ne[0], info->name, info->block_size);
    uint64_t blocks = count / info->block_size;
    if (blocks > UINT64_MAX / info->type_size)
        return error_set(err, "size overflows: %" PRIu64 " blocks of %" PRIu64 " bytes", blocks,
                         info->type_size);
    *nbytes = blocks * info->type_size;
    return 0;
}

static int tensor_read_shape(GgufCursor *c, GgufTensor *t, Error *err)
{
    /* n_dims says how many ne follow, so it is checked before they are read. */
    if (cursor_read_u32(c, "n_dims", &t->n_dims, err) != 0 ||
        tensor_check_n_dims(t->n_dims, err) != 0)
        return -1;
    for (uint32_t j = 0; j < GGUF_MAX_DIMS; j++) {
        t->ne[j] = 1;
        if (j < t->n_dims && cursor_read_u64(c, "dimension", &t->ne[j], err) != 0)
            return -1;
    }
    if (cursor_read_u32(c, "tensor type", &t->type, err) != 0 ||
        cursor_read_u64(c, "data offset", &t->offset, err) != 0)
        return -1;
    return tensor_compute_nbytes(t->type, t->n_dims, t->ne, &t->nbytes, err);
}

static int tensor_read_info(GgufCursor *c, GgufTensor *t, uint64_t index, Error *err)
{
    uint64_t len;
    if (cursor_read_string(c, "tensor name", &t->name, &len, err) != 0)
        return error_prefix(err, "tensor %" PRIu64, index);
    if (!name_is_clean(t->name, len))
        return error_set(err, "tensor %" PRIu64 ": the name is empty or contains a NUL byte",
                         index);
    if (tensor_read_shape(c, t, err) != 0)
        return error_prefix(err, "tensor '%s'", t->name);
    return 0;
}

static int gguf_read_tensor_infos(GgufCursor *c, GgufFile *f, uint64_t n_tensors, Error *err)
{
    /* Checked again now that the metadata has been read and the real number of bytes left
     * is known: still before the allocation. */
    if (n_tensors > cursor_left(c) / GGUF_MIN_TENSOR_INFO_BYTES)
        return error_set(err, "n_tensors is %" PRIu64 ", but the %zu bytes left hold at most %zu "
                              "tensor infos", n_tensors, cursor_left(c),
                         cursor_left(c) / GGUF_MIN_TENSOR_INFO_BYTES);
    if (n_tensors == 0)
        return 0;
    f->tensors = calloc((size_t)n_tensors, sizeof *f->tensors);
    if (!f->tensors)
        return error_set(err, "out of memory for %" PRIu64 " tensor infos", n_tensors);
    f->n_tensors = n_tensors;
    for (uint64_t i = 0; i < n_tensors; i++)
        if (tensor_read_info(c, &f->tensors[i], i, err) != 0)
            return -1;
    return 0;
}

/* The data section starts at the first multiple of the alignment after the tensor infos; each
 * tensor's offset is relative to it. Every tensor must start on an alignment boundary and end
 * inside the file. The comparisons are arranged so that nothing is added before it is known
 * not to overflow: offset <= size - start, then nbytes <= size - start - offset. */
static int gguf_place_tensors(GgufFile *f, const uint8_t *base, size_t header_end, size_t size,
                              Error *err)
{
    uint64_t pad = (f->alignment - header_end % f->alignment) % f->alignment;
    if (pad > UINT64_MAX - header_end)
        return error_set(err, "data section offset overflows");
    f->data_offset = header_end + pad;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        GgufTensor *t = &f->tensors[i];
        if (t->offset % f->alignment != 0)
            return error_set(err, "tensor '%s': offset %" PRIu64 " is not a multiple of the "
                                  "alignment %" PRIu64, t->name, t->offset, f->alignment);
        if (f->data_offset > size || t->offset > size - f->data_offset ||
            t->nbytes > size - f->data_offset - t->offset)
            return error_set(err, "tensor '%s': data extends past the end of the file (%" PRIu64
                                  " bytes at offset %" PRIu64 " of the data section, which starts "
                                  "at byte %" PRIu64 " of %zu)", t->name, t->nbytes, t->offset,
                             f->data_offset, size);
        t->data = base + f->data_offset + t->offset;
    }
    return 0;
}

static int gguf_parse_into(GgufFile *f, const uint8_t *base, size_t size, Error *err)
{
    GgufCursor c = {.data = base, .size = size, .pos = 0};
    uint64_t n_tensors = 0;
    if (gguf_read_header(&c, f, &n_tensors, err) != 0)
        return -1;
    for (uint64_t i = 0; i < f->n_kv; i++)
        if (kv_read(&c, &f->kv[i], i, err) != 0)
            return -1;
    if (gguf_check_unique_keys(f, err) != 0 || gguf_resolve_alignment(f, err) != 0 ||
        gguf_read_tensor_infos(&c, f, n_tensors, err) != 0 ||
        gguf_index_tensor_names(f, err) != 0)
        return -1;
    return gguf_place_tensors(f, base, c.pos, size, err);
}

int gguf_parse_buffer(GgufFile **out, const void *buf, size_t size, Error *err)
{
    *out = NULL;
    if (!buf && size > 0)
        return error_set(err, "no buffer to parse");
    GgufFile *f = calloc(1, sizeof *f);
    if (!f)
        return error_set(err, "out of memory");
    f->map_size = size;
    if (gguf_parse_into(f, buf, size, err) != 0) {
        gguf_close(f);
        return -1;
    }
    *out = f;
    return 0;
}

int gguf_open(GgufFile **out, const char *path, Error *err)
{
    void *map = NULL;
    size_t size = 0;
    *out = NULL;
    if (file_map_readonly(path, &map, &size, err) != 0)
        return -1;
    if (gguf_parse_buffer(out, map, size, err) != 0) {
        munmap(map, size);
        return error_prefix(err, "%s", path);
    }
    (*out)->map = map;
    return 0;
}

void gguf_close(GgufFile *f)
{
    if (!f)
        return;
    for (uint64_t i = 0; i < f->n_kv; i++)
        kv_free(&f->kv[i]);
    free(f->kv);
    for (uint64_t i = 0; i < f->n_tensors; i++)
        free(f->tensors[i].name);
    free(f->tensors);
    free(f->tensors_by_name);
    if (f->map)
        munmap(f->map, f->map_size);
    free(f);
}

/* ---- Lookups and typed getters ---- */

const GgufKV *gguf_find_kv(const GgufFile *f, const char *key)
{
    for (uint64_t i = 0; i < f->n_kv; i++)
        if (strcmp(f->kv[i].key, key) == 0)
            return &f->kv[i];
    return NULL;
}

const GgufTensor *gguf_find_tensor(const GgufFile *f, const char *name)
{
    uint64_t lo = 0, hi = f->n_tensors; /* the name, if present, is in [lo, hi) */
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        int order = strcmp(name, f->tensors_by_name[mid]->name);
        if (order == 0)
            return f->tensors_by_name[mid];
        if (order < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

static int kv_lookup(const GgufFile *f, const char *key, const GgufKV **kv, Error *err)
{
    *kv = gguf_find_kv(f, key);
    return *kv ? 0 : error_set(err, "key '%s' is missing", key);
}

static int kv_wrong_kind(const GgufKV *kv, const char *wanted, Error *err)
{
    if (kv->type == GGUF_TYPE_ARRAY)
        return error_set(err, "key '%s' holds an array of %s, expected %s", kv->key,
                         gguf_type_name(kv->elem_type), wanted);
    return error_set(err, "key '%s' holds a %s, expected %s", kv->key, gguf_type_name(kv->type),
                     wanted);
}

/* Any integer type is accepted as long as the value lies in [lo, hi]: converters write
 * token ids as u32 or i32 depending on their age, and the value is what matters. */
static int kv_get_integer(const GgufFile *f, const char *key, int64_t lo, int64_t hi,
                          const char *wanted, int64_t *out, Error *err)
{
    const GgufKV *kv;
    if (kv_lookup(f, key, &kv, err) != 0)
        return -1;
    if (value_type_is_unsigned(kv->type)) {
        if (kv->value.u > (uint64_t)hi)
            return error_set(err, "key '%s': %" PRIu64 " does not fit in %s", key, kv->value.u,
                             wanted);
        *out = (int64_t)kv->value.u;
        return 0;
    }
    if (value_type_is_signed(kv->type)) {
        if (kv->value.i < lo || kv->value.i > hi)
            return error_set(err, "key '%s': %" PRId64 " does not fit in %s", key, kv->value.i,
                             wanted);
        *out = kv->value.i;
        return 0;
    }
    return kv_wrong_kind(kv, wanted, err);
}

int gguf_get_u32(const GgufFile *f, const char *key, uint32_t *out, Error *err)
{
    int64_t v;
    if (kv_get_integer(f, key, 0, UINT32_MAX, "a u32", &v, err) != 0)
        return -1;
    *out = (uint32_t)v;
    return 0;
}

int gguf_get_i32(const GgufFile *f, const char *key, int32_t *out, Error *err)
{
    int64_t v;
    if (kv_get_integer(f, key, INT32_MIN, INT32_MAX, "an i32", &v, err) != 0)
        return -1;
    *out = (int32_t)v;
    return 0;
}

int gguf_get_f32(const GgufFile *f, const char *key, float *out, Error *err)
{
    const GgufKV *kv;
    if (kv_lookup(f, key, &kv, err) != 0)
        return -1;
    if (kv->type != GGUF_TYPE_FLOAT32 && kv->type != GGUF_TYPE_FLOAT64)
        return kv_wrong_kind(kv, "a float", err);
    *out = (float)kv->value.f;
    return 0;
}

int gguf_get_bool(const GgufFile *f, const char *key, bool *out, Error *err)
{
    const GgufKV *kv;
    if (kv_lookup(f, key, &kv, err) != 0)
        return -1;
    if (kv->type != GGUF_TYPE_BOOL)
        return kv_wrong_kind(kv, "a bool", err);
    *out = kv->value.u != 0;
    return 0;
}

int gguf_get_str(const GgufFile *f, const char *key, const char **out, Error *err)
{
    const GgufKV *kv;
    if (kv_lookup(f, key, &kv, err) != 0)
        return -1;
    if (kv->type != GGUF_TYPE_STRING)
        return kv_wrong_kind(kv, "a string", err);
    *out = kv->value.s;
    return 0;
}

int gguf_get_array(const GgufFile *f, const char *key, GgufType elem_type, uint64_t *n,
                   const void **data, Error *err)
{
    const GgufKV *kv;
    if (kv_lookup(f, key, &kv, err) != 0)
        return -1;
    if (kv->type != GGUF_TYPE_ARRAY || kv->elem_type != elem_type) {
        char wanted[32];
        snprintf(wanted, sizeof wanted, "an array of %s", gguf_type_name(elem_type));
        return kv_wrong_kind(kv, wanted, err);
    }
    *n = kv->n;
    *data = kv->array;
    return 0;
}

uint64_t gguf_tensor_nelements(const GgufTensor *t)
{
    uint64_t n = 1;
    for (int j = 0; j < GGUF_MAX_DIMS; j++)
        n *= t->ne[j];
    return n;
}

void gguf_hash_tensors(const GgufFile *f, bool with_data, Hash64Stream *h)
{
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const GgufTensor *t = &f->tensors[i];
        hash64_stream_add(h, t->name, strlen(t->name) + 1);
        hash64_stream_add(h, &t->type, sizeof t->type);
        hash64_stream_add(h, t->ne, sizeof t->ne);
        if (with_data)
            hash64_stream_add(h, t->data, (size_t)t->nbytes);
    }
}

/* ---- Writer ---- */

struct GgufWriter {
    GgufKV *kv; /* in the order added; the same owned form the reader produces */
    size_t n_kv, cap_kv;
    GgufTensor *tensors; /* names owned, data borrowed; offsets set by gguf_writer_write */
    size_t n_tensors, cap_tensors;
    bool failed; /* sticky: set by the first add that went wrong ... */
    Error error; /* ... and what went wrong, reported by gguf_writer_write */
};

GgufWriter *gguf_writer_new(void)
{
    return calloc(1, sizeof(GgufWriter));
}

void gguf_writer_free(GgufWriter *w)
{
    if (!w)
        return;
    for (size_t i = 0; i < w->n_kv; i++)
        kv_free(&w->kv[i]);
    free(w->kv);
    for (size_t i = 0; i < w->n_tensors; i++)
        free(w->tensors[i].name);
    free(w->tensors);
    free(w);
}

static void writer_fail(GgufWriter *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Records the first problem only: later ones are usually consequences of it. */
static void writer_fail(GgufWriter *w, const char *fmt, ...)
{
    if (w->failed)
        return;
    w->failed = true;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->error.msg, sizeof w->error.msg, fmt, ap);
    va_end(ap);
}

/* Appends a pair with the given key and type and no value yet; NULL (with the reason recorded)
 * when the writer has already failed, the key is a duplicate, or memory runs out. A linear
 * search for duplicates is enough here: a model has a few dozen keys, not a hostile million. */
static GgufKV *writer_append_kv(GgufWriter *w, const char *key, GgufType type)
{
    if (!w || w->failed)
        return NULL;
    if (!key || !*key) {
        writer_fail(w, "a metadata key is NULL or empty");
        return NULL;
    }
    for (size_t i = 0; i < w->n_kv; i++) {
        if (strcmp(w->kv[i].key, key) == 0) {
            writer_fail(w, "duplicate key '%s'", key);
            return NULL;
        }
    }
    Error grow_err = {{0}};
    if (buffer_reserve_items(&w->kv, &w->cap_kv, w->n_kv + 1, sizeof *w->kv, 16, "keys",
                             &grow_err) != 0) {
        writer_fail(w, "out of memory adding key '%s'", key);
        return NULL;
    }
    GgufKV *kv = &w->kv[w->n_kv];
    memset(kv, 0, sizeof *kv);
    kv->key = strdup(key);
    if (!kv->key) {
        writer_fail(w, "out of memory adding key '%s'", key);
        return NULL;
    }
    w->n_kv++;
    kv->type = type;
    kv->elem_type = type;
    kv->n = 1;
    return kv;
}

void gguf_writer_add_u32(GgufWriter *w, const char *key, uint32_t v)
{
    GgufKV *kv = writer_append_kv(w, key, GGUF_TYPE_UINT32);
    if (kv)
        kv->value.u = v;
}

void gguf_writer_add_i32(GgufWriter *w, const char *key, int32_t v)
{
    GgufKV *kv = writer_append_kv(w, key, GGUF_TYPE_INT32);
    if (kv)
        kv->value.i = v;
}

void gguf_writer_add_u64(GgufWriter *w, const char *key, uint64_t v)
{
    GgufKV *kv = writer_append_kv(w, key, GGUF_TYPE_UINT64);
    if (kv)
        kv->value.u = v;
}

void gguf_writer_add_f32(GgufWriter *w, const char *key, float v)
{
    GgufKV *kv = writer_append_kv(w, key, GGUF_TYPE_FLOAT32);
    if (kv)
        kv->value.f = v;
}

void gguf_writer_add_bool(GgufWriter *w, const char *key, bool v)
{
    GgufKV *kv = writer_append_kv(w, key, GGUF_TYPE_BOOL);
    if (kv)
        kv->value.u = v;
}

void gguf_writer_add_str(GgufWriter *w, const char *key, const char *v)
{
    GgufKV *kv = writer_append_kv(w, key, GGUF_TYPE_STRING);
    if (!kv)
        return;
    if (!v) {
        writer_fail(w, "key '%s': the string is NULL", key);
        return;
    }
    kv->value.s = strdup(v);
    if (!kv->value.s)
        writer_fail(w, "out of memory adding key '%s'", key);
}

void gguf_writer_add_array(GgufWriter *w, const char *key, GgufType elem_type, const void *data,
                           uint64_t n)
{
    GgufKV *kv = writer_append_kv(w, key, GGUF_TYPE_ARRAY);
    if (!kv)
        return;
    if (!value_type_is_known(elem_type) || elem_type == GGUF_TYPE_STRING ||
        elem_type == GGUF_TYPE_ARRAY) {
        writer_fail(w, "key '%s': an array of %s cannot be added as numbers", key,
                    gguf_type_name(elem_type));
        return;
    }
    size_t size = value_type_sizes[elem_type];
    if (n > SIZE_MAX / size || (n > 0 && !data)) {
        writer_fail(w, "key '%s': the array data is NULL or too large (%" PRIu64 " elements)",
                    key, n);
        return;
    }
    kv->elem_type = elem_type;
    kv->array = malloc(n ? (size_t)n * size : 1);
    if (!kv->array) {
        writer_fail(w, "out of memory adding key '%s'", key);
        return;
    }
    if (n > 0)
        memcpy(kv->array, data, (size_t)n * size);
    kv->n = n;
}

void gguf_writer_add_str_array(GgufWriter *w, const char *key, const char *const *strs,
                               uint64_t n)
{
    GgufKV *kv = writer_append_kv(w, key, GGUF_TYPE_ARRAY);
    if (!kv)
        return;
    kv->elem_type = GGUF_TYPE_STRING;
    if (n > SIZE_MAX / sizeof(char *) || (n > 0 && !strs)) {
        writer_fail(w, "key '%s': bad string array (%" PRIu64 " strings)", key, n);
        return;
    }
    char **copy = calloc(n ? (size_t)n : 1, sizeof *copy);
    if (!copy) {
        writer_fail(w, "out of memory adding key '%s'", key);
        return;
    }
    kv->array = copy;
    kv->n = n;
    for (size_t i = 0; i < n; i++) {
        copy[i] = strs[i] ? strdup(strs[i]) : NULL;
        if (!copy[i]) {
            writer_fail(w, "key '%s': string %zu is NULL or out of memory", key, i);
            return;
        }
    }
}

void gguf_writer_add_kv(GgufWriter *w, const GgufKV *src)
{
    if (src->type == GGUF_TYPE_ARRAY) {
        if (src->elem_type == GGUF_TYPE_STRING)
            gguf_writer_add_str_array(w, src->key, (const char *const *)src->array, src->n);
        else
            gguf_writer_add_array(w, src->key, src->elem_type, src->array, src->n);
        return;
    }
    if (src->type == GGUF_TYPE_STRING) {
        gguf_writer_add_str(w, src->key, src->value.s);
        return;
    }
    GgufKV *kv = writer_append_kv(w, src->key, src->type);
    if (kv)
        kv->value = src->value; /* the widened scalar; written back at its own width */
}

void gguf_writer_add_tensor(GgufWriter *w, const char *name, GgmlType type, uint32_t n_dims,
                            const uint64_t *ne, const void *data)
{
    if (!w || w->failed)
        return;
    if (!name || !*name || strlen(name) > GGUF_MAX_TENSOR_NAME) {
        writer_fail(w, "tensor name '%s' is empty or longer than %d bytes", name ? name : "(null)",
                    GGUF_MAX_TENSOR_NAME);
        return;
    }
    for (size_t i = 0; i < w->n_tensors; i++) {
        if (strcmp(w->tensors[i].name, name) == 0) {
            writer_fail(w, "duplicate tensor name '%s'", name);
            return;
        }
    }
    if (!ne || !data) {
        writer_fail(w, "tensor '%s': shape or data is NULL", name);
        return;
    }
    GgufTensor t = {.n_dims = n_dims, .type = type, .data = data};
    for (uint32_t j = 0; j < GGUF_MAX_DIMS; j++)
        t.ne[j] = j < n_dims ? ne[j] : 1;
    Error e;
    if (tensor_compute_nbytes(type, n_dims, t.ne, &t.nbytes, &e) != 0) {
        writer_fail(w, "tensor '%s': %s", name, e.msg);
        return;
    }
    bool room = buffer_reserve_items(&w->tensors, &w->cap_tensors, w->n_tensors + 1,
                                     sizeof *w->tensors, 16, "tensors", &e) == 0;
    t.name = room ? strdup(name) : NULL;
    if (!t.name) {
        writer_fail(w, "out of memory adding tensor '%s'", name);
        return;
    }
    w->tensors[w->n_tensors++] = t;
}

/* The alignment the writer lays data out with: general.alignment when the caller set it
 * (then it must be valid, or the file would contradict itself), else the default 32. */
static int writer_alignment(const GgufWriter *w, uint64_t *alignment, Error *err)
{
    *alignment = GGUF_DEFAULT_ALIGNMENT;
    for (size_t i = 0; i < w->n_kv; i++) {
        if (strcmp(w->kv[i].key, GGUF_KEY_ALIGNMENT) == 0) {
            if (alignment_check(&w->kv[i], err) != 0)
                return -1;
            *alignment = w->kv[i].value.u;
        }
    }
    return 0;
}

/* Gives each tensor its offset: tensors follow one another, each padded to the alignment.
 * llama.cpp insists on exactly this packing (offset i = sum of the padded sizes before i). */
static int writer_layout_tensors(GgufWriter *w, uint64_t alignment, Error *err)
{
    uint64_t offset = 0;
    for (size_t i = 0; i < w->n_tensors; i++) {
        GgufTensor *t = &w->tensors[i];
        uint64_t pad = (alignment - t->nbytes % alignment) % alignment;
        if (t->nbytes > UINT64_MAX - pad || offset > UINT64_MAX - (t->nbytes + pad))
            return error_set(err, "tensor '%s': the data section would exceed 2^64 bytes",
                             t->name);
        t->offset = offset;
        offset += t->nbytes + pad;
    }
    return 0;
}

/* Where the writer's bytes go: counts them (padding depends on the position) and keeps the
 * first write error, so the emitting code reads as a plain sequence of writes. */
typedef struct {
    FILE *fp;
    uint64_t written;
    int error; /* errno of the first failed write; 0 while all is well */
} GgufSink;

static void sink_write(GgufSink *s, const void *p, size_t n)
{
    if (s->error || n == 0)
        return;
    errno = 0;
    if (fwrite(p, 1, n, s->fp) != n) {
        s->error = errno ? errno : EIO;
        return;
    }
    s->written += n;
}

/* Writes the low `size` bytes of v: in little-endian order they come first, so the first
 * `size` bytes of v's 8-byte encoding are exactly its `size`-byte encoding. */
static void sink_write_uint(GgufSink *s, uint64_t v, size_t size)
{
    uint8_t bytes[8];
    le_store64(bytes, v);
    sink_write(s, bytes, size);
}

static void sink_write_string(GgufSink *s, const char *str)
{
    size_t len = strlen(str);
    sink_write_uint(s, len, 8);
    sink_write(s, str, len);
}

/* Zero bytes up to the next multiple of the alignment. The data section starts on such a
 * multiple, so padding to a file position is the same as padding to a data offset. */
static void sink_write_padding(GgufSink *s, uint64_t alignment)
{
    static const uint8_t zeros[256];
    uint64_t pad = (alignment - s->written % alignment) % alignment;
    while (pad > 0 && !s->error) {
        size_t chunk = pad < sizeof zeros ? (size_t)pad : sizeof zeros;
        sink_write(s, zeros, chunk);
        pad -= chunk;
    }
}

/* { element type u32, count u64, elements }; bools are written as exactly 0 or 1. */
static void sink_write_array(GgufSink *s, const GgufKV *kv)
{
    size_t size = value_type_sizes[kv->elem_type];
    sink_write_uint(s, kv->elem_type, 4);
    sink_write_uint(s, kv->n, 8);
    for (uint64_t i = 0; i < kv->n; i++) {
        if (kv->elem_type == GGUF_TYPE_STRING) {
            sink_write_string(s, ((char *const *)kv->array)[i]);
        } else {
            uint64_t bits = native_load((const uint8_t *)kv->array + i * size, size);
            sink_write_uint(s, kv->elem_type == GGUF_TYPE_BOOL ? bits != 0 : bits, size);
        }
    }
}

static void sink_write_kv(GgufSink *s, const GgufKV *kv)
{
    sink_write_string(s, kv->key);
    sink_write_uint(s, kv->type, 4);
    if (kv->type == GGUF_TYPE_ARRAY)
        sink_write_array(s, kv);
    else if (kv->type == GGUF_TYPE_STRING)
        sink_write_string(s, kv->value.s);
    else
        sink_write_uint(s, kv_scalar_bits(kv), value_type_sizes[kv->type]);
}

static void sink_write_tensor_info(GgufSink *s, const GgufTensor *t)
{
    sink_write_string(s, t->name);
    sink_write_uint(s, t->n_dims, 4);
    for (uint32_t j = 0; j < t->n_dims; j++)
        sink_write_uint(s, t->ne[j], 8);
    sink_write_uint(s, t->type, 4);
    sink_write_uint(s, t->offset, 8);
}

/* The whole file in order. The last tensor is padded too: llama.cpp's own reader, when it
 * loads the data section in one piece, reads the padded size of every tensor. */
static void writer_emit(const GgufWriter *w, GgufSink *s, uint64_t alignment)
{
    sink_write(s, GGUF_MAGIC, 4);
    sink_write_uint(s, GGUF_WRITE_VERSION, 4);
    sink_write_uint(s, w->n_tensors, 8);
    sink_write_uint(s, w->n_kv, 8);
    for (size_t i = 0; i < w->n_kv; i++)
        sink_write_kv(s, &w->kv[i]);
    for (size_t i = 0; i < w->n_tensors; i++)
        sink_write_tensor_info(s, &w->tensors[i]);
    sink_write_padding(s, alignment);
    for (size_t i = 0; i < w->n_tensors; i++) {
        sink_write(s, w->tensors[i].data, (size_t)w->tensors[i].nbytes);
        sink_write_padding(s, alignment);
    }
}

int gguf_writer_write(GgufWriter *w, const char *path, Error *err)
{
    uint64_t alignment;
    if (!w)
        return error_set(err, "%s: no writer (out of memory when it was created)", path);
    /* Every check happens before the file is opened, so a failed write never touches the
     * existing file and leaves no temporary file behind. */
    if (w->failed)
        return error_set(err, "%s: %s", path, w->error.msg);
    if (writer_alignment(w, &alignment, err) != 0 ||
        writer_layout_tensors(w, alignment, err) != 0)
        return error_prefix(err, "%s", path);
    AtomicFile af;
    if (atomic_file_open(&af, path, err) != 0)
        return -1;
    GgufSink sink = {.fp = af.fp, .written = 0, .error = 0};
    writer_emit(w, &sink, alignment);
    if (sink.error) {
        atomic_file_abort(&af);
        return error_set(err, "%s: write failed: %s", path, strerror(sink.error));
    }
    return atomic_file_commit(&af, err);
}

/* ---- Checksums ----
 * A GGUF file has no checksum of its own. Files that must not be used damaged (quill's
 * train_state) carry two extra keys: a hash of every other key-value pair, and one hash per
 * tensor's data. The pairs are hashed in a canonical form that the writer and the reader
 * both produce from GgufKV: the key with its NUL, the value type, then the value (scalars as
 * their widened union, strings with their NUL, arrays element by element). */

static void hash_kv(Hash64Stream *h, const GgufKV *kv)
{
    uint32_t types[2] = {kv->type, kv->elem_type};
    hash64_stream_add(h, kv->key, strlen(kv->key) + 1);
    hash64_stream_add(h, types, sizeof types);
    hash64_stream_add(h, &kv->n, sizeof kv->n);
    if (kv->type == GGUF_TYPE_STRING) {
        hash64_stream_add(h, kv->value.s, strlen(kv->value.s) + 1);
    } else if (kv->type != GGUF_TYPE_ARRAY) {
        uint64_t bits = kv->type == GGUF_TYPE_FLOAT32 || kv->type == GGUF_TYPE_FLOAT64
                            ? native_load(&kv->value.f, 8)
                            : kv->value.u;
        hash64_stream_add(h, &bits, sizeof bits);
    } else if (kv->elem_type == GGUF_TYPE_STRING) {
        for (uint64_t i = 0; i < kv->n; i++)
            hash64_stream_add(h, ((char **)kv->array)[i], strlen(((char **)kv->array)[i]) + 1);
    } else {
        hash64_stream_add(h, kv->array, (size_t)kv->n * value_type_sizes[kv->elem_type]);
    }
}

/* The hash of every pair but the two checksum keys, in order; 0 when out of memory. */
static uint64_t hash_metadata(const GgufKV *kvs, size_t n, const char *metadata_key,
                              const char *tensors_key)
{
    Hash64Stream *h = hash64_stream_new();
    if (!h)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (strcmp(kvs[i].key, metadata_key) != 0 && strcmp(kvs[i].key, tensors_key) != 0)
            hash_kv(h, &kvs[i]);
    uint64_t value = hash64_stream_value(h);
    hash64_stream_free(h);
    return value;
}

void gguf_writer_add_checksums(GgufWriter *w, const char *metadata_key, const char *tensors_key)
{
    if (!w || w->failed)
        return;
    uint64_t *sums = malloc((w->n_tensors ? w->n_tensors : 1) * sizeof *sums);
    if (!sums) {
        writer_fail(w, "out of memory for tensor checksums");
        return;
    }
    for (size_t i = 0; i < w->n_tensors; i++)
        sums[i] = hash64(w->tensors[i].data, (size_t)w->tensors[i].nbytes);
    gguf_writer_add_u64(w, metadata_key, hash_metadata(w->kv, w->n_kv, metadata_key, tensors_key));
    gguf_writer_add_array(w, tensors_key, GGUF_TYPE_UINT64, sums, w->n_tensors);
    free(sums);
}

int gguf_verify_checksums(const GgufFile *f, const char *metadata_key, const char *tensors_key,
                          Error *err)
{
    const GgufKV *meta = gguf_find_kv(f, metadata_key);
    uint64_t n;
    const void *sums;
    if (!meta || meta->type != GGUF_TYPE_UINT64)
        return error_set(err, "key %s is missing or not a u64", metadata_key);
    if (gguf_get_array(f, tensors_key, GGUF_TYPE_UINT64, &n, &sums, err) != 0)
        return -1;
    if (n != f->n_tensors)
        return error_set(err, "key %s holds %" PRIu64 " checksums for %" PRIu64 " tensors",
                         tensors_key, n, f->n_tensors);
    if (hash_metadata(f->kv, (size_t)f->n_kv, metadata_key, tensors_key) != meta->value.u)
        return error_set(err, "the metadata (the key-value pairs before byte %" PRIu64 ") does "
                              "not match its checksum: the file is damaged",
                         f->data_offset);
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const GgufTensor *t = &f->tensors[i];
        if (hash64(t->data, (size_t)t->nbytes) != ((const uint64_t *)sums)[i])
            return error_set(err, "tensor '%s' (bytes %" PRIu64 "..%" PRIu64 ") does not match "
                                  "its checksum: the file is damaged",
                             t->name, f->data_offset + t->offset,
                             f->data_offset + t->offset + t->nbytes - 1);
    }
    return 0;
}

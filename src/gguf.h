/* GGUF v3: the file format of llama.cpp, and of every quill model and checkpoint.
 *
 * Layout (all little-endian; docs/formats.md has the byte-level description):
 *
 *   magic "GGUF" | version u32 | n_tensors u64 | n_kv u64
 *   n_kv x       { key: string, value type u32, value }
 *   n_tensors x  { name: string, n_dims u32, ne[n_dims] u64, ggml type u32, offset u64 }
 *   padding to general.alignment (default 32)
 *   tensor data; each tensor starts at data_start + offset, offset a multiple of the alignment
 *
 * A string is a u64 byte count followed by the bytes (no NUL). An array value is
 * { element type u32, count u64, elements }.
 *
 * The reader treats the file as untrusted: every count, size, offset and
 * alignment is range-checked with overflow-safe arithmetic before it is used, nothing is
 * read past the end of the file, and an error names the field that is wrong. The file is
 * memory-mapped: tensor data is used in place, metadata is copied into owned memory. */
#ifndef QUILL_GGUF_H
#define QUILL_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "hash.h"

/* Metadata value types, numbered as in the file. */
typedef enum {
    GGUF_TYPE_UINT8 = 0,
    GGUF_TYPE_INT8 = 1,
    GGUF_TYPE_UINT16 = 2,
    GGUF_TYPE_INT16 = 3,
    GGUF_TYPE_UINT32 = 4,
    GGUF_TYPE_INT32 = 5,
    GGUF_TYPE_FLOAT32 = 6,
    GGUF_TYPE_BOOL = 7,
    GGUF_TYPE_STRING = 8,
    GGUF_TYPE_ARRAY = 9,
    GGUF_TYPE_UINT64 = 10,
    GGUF_TYPE_INT64 = 11,
    GGUF_TYPE_FLOAT64 = 12,
} GgufType;

/* Tensor element types (ggml's numbering). Quantised types store blocks of `block_size`
 * elements in `type_size` bytes; see gguf_tensor_type_layout(). */
typedef enum {
    GGML_TYPE_F32 = 0,
    GGML_TYPE_F16 = 1,
    GGML_TYPE_Q4_0 = 2,
    GGML_TYPE_Q4_1 = 3,
    GGML_TYPE_Q5_0 = 6,
    GGML_TYPE_Q5_1 = 7,
    GGML_TYPE_Q8_0 = 8,
    GGML_TYPE_Q8_1 = 9,
    GGML_TYPE_Q2_K = 10,
    GGML_TYPE_Q3_K = 11,
    GGML_TYPE_Q4_K = 12,
    GGML_TYPE_Q5_K = 13,
    GGML_TYPE_Q6_K = 14,
    GGML_TYPE_Q8_K = 15,
    GGML_TYPE_BF16 = 30,
} GgmlType;

#define GGUF_MAX_DIMS 4
#define GGUF_DEFAULT_ALIGNMENT 32

/* One metadata pair, copied out of the file. */
typedef struct {
    char *key;
    GgufType type;      /* the value's type; GGUF_TYPE_ARRAY for arrays */
    GgufType elem_type; /* arrays: the element type (never ARRAY: nested arrays are rejected) */
    uint64_t n;         /* arrays: element count; scalars: 1 */
    union {             /* scalars, widened: */
        uint64_t u;     /*   UINT8..UINT64 and BOOL (0/1) */
        int64_t i;      /*   INT8..INT64 */
        double f;       /*   FLOAT32, FLOAT64 */
        char *s;        /*   STRING (NUL-terminated copy) */
    } value;
    void *array;        /* arrays: n elements in native layout of elem_type;
                           strings: char *[n], each NUL-terminated; bools: uint8_t */
} GgufKV;

/* One tensor's description; `data` points into the mapped file. */
typedef struct {
    char *name;
    uint32_t n_dims;
    uint64_t ne[GGUF_MAX_DIMS]; /* ne[0] varies fastest (one row); unused dims are 1 */
    uint32_t type;              /* GgmlType */
    uint64_t offset;            /* from the start of the data section */
    uint64_t nbytes;
    const void *data;
} GgufTensor;

typedef struct {
    uint32_t version;
    uint64_t alignment; /* general.alignment, or 32 */
    uint64_t n_kv;
    GgufKV *kv;
    uint64_t n_tensors;
    GgufTensor *tensors;
    GgufTensor **tensors_by_name; /* private: sorted by name, for gguf_find_tensor */
    uint64_t data_offset; /* where the data section starts in the file */
    void *map;            /* private: the mapping (or NULL for gguf_parse_buffer) */
    size_t map_size;
} GgufFile;

/* Opens and validates path. On failure *out is NULL and err says what is wrong, e.g.
 * "model.gguf: tensor 'blk.0.attn_q.weight': data extends past the end of the file". */
int gguf_open(GgufFile **out, const char *path, Error *err);
/* Parses a GGUF image already in memory; `buf` must outlive the result. */
int gguf_parse_buffer(GgufFile **out, const void *buf, size_t size, Error *err);
/* NULL-safe. */
void gguf_close(GgufFile *f);

const GgufKV *gguf_find_kv(const GgufFile *f, const char *key);
const GgufTensor *gguf_find_tensor(const GgufFile *f, const char *name);

/* Typed getters. Each fails with a message naming the key when it is missing or holds a
 * value of another kind; integer getters accept any integer type whose value fits. */
int gguf_get_u32(const GgufFile *f, const char *key, uint32_t *out, Error *err);
int gguf_get_i32(const GgufFile *f, const char *key, int32_t *out, Error *err);
int gguf_get_f32(const GgufFile *f, const char *key, float *out, Error *err);
int gguf_get_bool(const GgufFile *f, const char *key, bool *out, Error *err);
int gguf_get_str(const GgufFile *f, const char *key, const char **out, Error *err);
/* An array whose elements have type elem_type; *data as in GgufKV.array. */
int gguf_get_array(const GgufFile *f, const char *key, GgufType elem_type, uint64_t *n,
                   const void **data, Error *err);

/* Adds every tensor's name, type and shape to h, in the file's order, and with_data also
 * its bytes: what a file's tensors are (a saved state's model) or hold (a LoRA adapter). */
void gguf_hash_tensors(const GgufFile *f, bool with_data, Hash64Stream *h);

/* Element count of a tensor: the product of ne. */
uint64_t gguf_tensor_nelements(const GgufTensor *t);

/* Name of a tensor type ("F32", "Q4_K", ...), or NULL for a type quill does not know. */
const char *gguf_tensor_type_name(uint32_t type);
/* Block layout of a tensor type: `block_size` elements take `type_size` bytes.
 * Returns -1 for an unknown type. */
int gguf_tensor_type_layout(uint32_t type, uint64_t *block_size, uint64_t *type_size);
/* Name of a metadata value type ("u32", "string", ...). */
const char *gguf_type_name(GgufType type);

/* ---- Writer ----
 * Collects metadata and tensors, then writes the file atomically (fileio.h). The add
 * functions never fail on the spot: the first problem (out of memory, a duplicate key or
 * tensor name, a tensor whose size does not fit its type) is remembered and returned by
 * gguf_writer_write, so building a file reads as a plain list of adds. Tensor data is
 * borrowed, not copied: it must stay valid until gguf_writer_write returns. */
typedef struct GgufWriter GgufWriter;

GgufWriter *gguf_writer_new(void);
void gguf_writer_free(GgufWriter *w); /* NULL-safe */

void gguf_writer_add_u32(GgufWriter *w, const char *key, uint32_t v);
void gguf_writer_add_i32(GgufWriter *w, const char *key, int32_t v);
void gguf_writer_add_u64(GgufWriter *w, const char *key, uint64_t v);
void gguf_writer_add_f32(GgufWriter *w, const char *key, float v);
void gguf_writer_add_bool(GgufWriter *w, const char *key, bool v);
void gguf_writer_add_str(GgufWriter *w, const char *key, const char *v);
/* Array of numbers or bools (bools as uint8_t), copied. */
void gguf_writer_add_array(GgufWriter *w, const char *key, GgufType elem_type,
                           const void *data, uint64_t n);
void gguf_writer_add_str_array(GgufWriter *w, const char *key, const char *const *strs,
                               uint64_t n);
/* A copy of a pair as gguf_open read it, whatever its type (scalars of every width, strings,
 * arrays of numbers, bools or strings): how a tool carries a file's metadata over. */
void gguf_writer_add_kv(GgufWriter *w, const GgufKV *kv);
/* ne as in GgufTensor: ne[0] is the row length. */
void gguf_writer_add_tensor(GgufWriter *w, const char *name, GgmlType type, uint32_t n_dims,
                            const uint64_t *ne, const void *data);

/* Adds two keys that let a reader detect damage: metadata_key, a u64 hash of every other
 * key-value pair, and tensors_key, an array of one u64 hash (XXH3) per tensor's data. Call
 * it after the last add, just before gguf_writer_write. */
void gguf_writer_add_checksums(GgufWriter *w, const char *metadata_key, const char *tensors_key);

int gguf_writer_write(GgufWriter *w, const char *path, Error *err);

/* Checks the two keys gguf_writer_add_checksums wrote; the message names the first damaged
 * part: the metadata or a tensor, with its byte range in the file. */
int gguf_verify_checksums(const GgufFile *f, const char *metadata_key, const char *tensors_key,
                          Error *err);

#endif

/* What quill quantize shares with quill merge: writing a GGUF model with its matrices
 * converted, and rows changed on the way. */
#ifndef QUILL_GENERATE_QUANTIZE_H
#define QUILL_GENERATE_QUANTIZE_H

#include <stdint.h>

#include "error.h"
#include "gguf.h"

/* A change to some tensors' rows, made between dequantizing a row to floats and quantizing
 * it again (quill merge's W + scale * B A). find gives a tensor's state, or NULL for a
 * tensor the edit leaves as it is; row changes row r (n floats) of the tensor whose state
 * it is given. row is called from several threads at once, for different rows. */
typedef struct {
    const void *(*find)(const void *ctx, const GgufTensor *t);
    void (*row)(const void *state, int64_t r, float *x, int64_t n);
    const void *ctx;
} TensorEdit;

/* Writes the model `in` to out_path (atomically), its matrices in the types quill quantize
 * gives type_name (NULL: each tensor keeps its type, and the metadata is copied as it is),
 * each changed by edit (NULL: none) where it applies: a tensor it changes is dequantized,
 * edited and quantized back, a tensor neither converted nor edited is copied byte for
 * byte. Prints one line with the sizes. */
int quantize_write(const GgufFile *in, const char *out_path, const char *type_name,
                   const TensorEdit *edit, Error *err);

/* OUT must be a file other than IN: the new file replaces OUT whole (an atomic rename), so
 * writing it over IN, under any name or link, would lose the file it came from. command
 * names the command in the message. */
int quantize_check_out_path(const char *command, const char *in_path, const char *out_path,
                            Error *err);

#endif

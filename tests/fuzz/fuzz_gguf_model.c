/* libFuzzer harness: a GGUF file as `quill generate` opens it. The reader parses the bytes,
 * then the model and the tokenizer are built from them; when both load, a short text is
 * encoded and decoded with the file's vocabulary. Nothing may crash, hang or take memory
 * out of proportion to the input (make fuzz runs with -timeout and -rss_limit_mb). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "model.h"
#include "tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void exercise_tokenizer(const Tokenizer *tok)
{
    static const char text[] = "Hello world, \xe2\x96\x81 caf\xc3\xa9 \xff!";
    int *ids;
    size_t n_ids, len;
    char *decoded;
    Error err;
    if (tokenizer_encode(tok, text, sizeof text - 1, true, &ids, &n_ids, &err) != 0)
        return;
    if (tokenizer_decode(tok, ids, n_ids, &decoded, &len, &err) == 0)
        free(decoded);
    free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    GgufFile *f;
    Error err;
    if (gguf_parse_buffer(&f, data, size, &err) != 0)
        return 0;
    Model m;
    if (model_from_gguf(&m, f, &err) == 0)
        model_free(&m);
    Tokenizer tok;
    if (tokenizer_from_gguf(&tok, f, &err) == 0) {
        exercise_tokenizer(&tok);
        tokenizer_free(&tok);
    }
    gguf_close(f);
    return 0;
}

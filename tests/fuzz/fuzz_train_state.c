/* libFuzzer harness: a train_state file, as `quill train --resume` reads it. The checksums
 * are checked, and, whatever they say, the state is also read from the parsed file, so that
 * the fuzzer reaches the readers behind the checksums (a mutated input rarely keeps them
 * valid). */
#include <stdint.h>
#include <stdlib.h>

#include "../../train/checkpoint.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    GgufFile *f;
    Error err;
    if (gguf_parse_buffer(&f, data, size, &err) != 0)
        return 0;
    gguf_verify_checksums(f, "quill.checksum.metadata", "quill.checksum.tensors", &err);
    Model m;
    Tokenizer tok;
    Optimizer o;
    TrainProgressState state;
    if (checkpoint_read(f, &m, &tok, &o, &state, &err) == 0) {
        model_free(&m);
        tokenizer_free(&tok);
        optimizer_free(&o);
        free(state.config_json);
    }
    gguf_close(f);
    return 0;
}

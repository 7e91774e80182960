#include "loader.h"

#include <string.h>

#include "gguf.h"

int model_file_load(const char *path, Model *m, Tokenizer *tok, Error *err)
{
    memset(m, 0, sizeof *m);
    memset(tok, 0, sizeof *tok);
    GgufFile *f;
    if (gguf_open(&f, path, err) != 0)
        return -1;
    int status = 0;
    if (model_from_gguf(m, f, err) != 0 || tokenizer_from_gguf(tok, f, err) != 0) {
        error_prefix(err, "%s", path);
        model_free(m);
        tokenizer_free(tok);
        status = -1;
    }
    gguf_close(f);
    return status;
}

#include "loader.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "gguf.h"

int model_file_load(const char *path, Model *m, Tokenizer *tok, Error *err)
{
    memset(m, 0, sizeof *m);
    memset(tok, 0, sizeof *tok);
    GgufFile *f;
    if (gguf_open(&f, path, err) != 0)
        return -1;
    if (tokenizer_from_gguf(tok, f, err) != 0 || model_map_gguf(m, f, err) != 0) {
        error_prefix(err, "%s", path);
        tokenizer_free(tok);
        gguf_close(f);
        return -1;
    }
    return 0;
}

void model_path_resolve(const char *model, char *path, size_t cap)
{
    struct stat st;
    bool directory = stat(model, &st) == 0 && S_ISDIR(st.st_mode);
    snprintf(path, cap, directory ? "%s/model.gguf" : "%s", model);
}

/* libFuzzer harness: a token cache (DIR/tokens.bin) as a training run opens it, for the
 * fixed text and tokenizer of fuzz_common.h, which the seed caches were made from. The
 * input is written to a file because the cache is read from a file and memory-mapped. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "../../train/data.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char text_path[256], cache_path[256];
static Tokenizer tok;
static uint64_t source_key;

static int setup(void)
{
    static char dir[] = "/tmp/quill-fuzz-cache-XXXXXX";
    const char *paths[] = {text_path};
    Error err;
    if (!mkdtemp(dir) || fuzz_text_and_tokenizer(dir, text_path, sizeof text_path, &tok) != 0 ||
        data_source_key(paths, 1, &tok, &source_key, &err) != 0)
        return -1;
    snprintf(cache_path, sizeof cache_path, "%s/tokens.bin", dir);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready = 1;
    if (ready == 1)
        ready = setup();
    if (ready != 0)
        abort(); /* the harness itself could not start */
    FILE *fp = fopen(cache_path, "wb");
    if (!fp)
        abort();
    fwrite(data, 1, size, fp);
    fclose(fp);
    TokenData d;
    Error err;
    if (data_cache_open(&d, cache_path, (uint32_t)tok.n_vocab, source_key, &err) == 0) {
        size_t n;
        data_split(&d, SPLIT_ALL, &n);
        for (size_t i = 0; i < n; i++)
            if (data_token(&d, i) < 0 || data_token(&d, i) >= tok.n_vocab)
                abort(); /* an id the embedding lookup would read out of bounds */
        data_free(&d);
    }
    return 0;
}

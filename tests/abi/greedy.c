/* An ABI test: a program that includes only <quill.h> and links only libquill.so (and
 * -lm) loads stories260K, generates 200 tokens greedily through quill_generate and gets
 * llama.cpp's greedy bytes from the .ref.json. */
#include "reference.h"

int main(void)
{
    quill_model *m;
    char *want;
    size_t n;
    int status = load_reference(&m, &want, &n);
    if (status != 0)
        return status;
    status = generate_and_compare(m, 1, "greedy", want, n);
    if (status == 0)
        printf("greedy: %zu bytes, llama.cpp's, through libquill %s\n", n, quill_version());
    free(want);
    quill_model_free(m);
    return status;
}

/* An ABI test: a program that includes only <quill.h> and links only libquill.so (and
 * -lm) loads stories260K, generates 200 tokens greedily through quill_generate and gets
 * llama.cpp's greedy bytes from the .ref.json. */
#include "reference.h"

int main(void)
{
    Reference r;
    int status = load_reference(&r);
    if (status != 0)
        return status;
    status = generate_and_compare(r.model, 1, "greedy", r.want, r.n);
    if (status == 0)
        printf("greedy: %zu bytes, llama.cpp's, through libquill %s\n", r.n, quill_version());
    reference_free(&r);
    return status;
}

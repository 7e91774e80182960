/* libFuzzer harness: a JSON Schema, as quill grammar --json-schema reads it, and a text for
 * it. The input is the schema, a NUL byte, then the text (no NUL: an empty text). Whenever
 * the schema converts, the GBNF it becomes must parse: the converter writes only grammar
 * that grammar_parse reads, the one exception being a schema whose $ref leads back to itself
 * before anything is read (left recursion, which grammar_parse names). The text is then
 * judged by the grammar. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json_schema.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    size_t schema_len = nul ? (size_t)(nul - data) : size;
    const uint8_t *text = nul ? nul + 1 : data + size;
    size_t text_len = (size_t)(data + size - text);
    char *gbnf;
    Error err;
    if (json_schema_to_gbnf((const char *)data, schema_len, &gbnf, &err) != 0)
        return 0;
    Grammar g;
    int status = grammar_parse(gbnf, strlen(gbnf), &g, &err);
    free(gbnf);
    if (status != 0) {
        if (!strstr(err.msg, "left-recursive"))
            abort();
        return 0;
    }
    bool accepted;
    if (grammar_accepts(&g, (const char *)text, text_len, &accepted, &err) != 0)
        abort();
    grammar_free(&g);
    return 0;
}

/* JSON Schema to GBNF: turns a JSON Schema (the document that says "an object with a name
 * that is a string and an age from 0 to 120") into a grammar in src/grammar.h's format, so
 * that sampling with it can only write JSON that the schema accepts. The technique is
 * llama.cpp's json-schema-to-grammar: one rule per schema, the JSON syntax written out in
 * literals, optional whitespace after each token, integer ranges as rules over digits.
 *
 *   {"type": "object",                       root ::= "{" space root-age-kv "}" space
 *    "properties": {"age": {"type":  ->      root-age-kv ::= "\"age\"" space ":" space root-age
 *      "integer", "maximum": 120}},          root-age ::= ("-" ... | [0-9] | ...) space
 *    "required": ["age"]}
 *
 * What is supported, the regex subset of "pattern", and what is refused (always with the
 * keyword and its place, "#/properties/age: keyword 'not' is not supported") are in
 * docs/grammars.md. */
#ifndef QUILL_JSON_SCHEMA_H
#define QUILL_JSON_SCHEMA_H

#include <stddef.h>

#include "error.h"
#include "grammar.h"

/* The schema of --json: the empty schema, which every JSON value matches. */
#define JSON_SCHEMA_ANY_VALUE "{}"

/* Converts the JSON Schema in schema[0..len) into GBNF text (*gbnf, malloc'd,
 * NUL-terminated; root first, then the other rules in the order they were made). On
 * failure err names the problem and where it is in the schema, as a JSON pointer. */
int json_schema_to_gbnf(const char *schema, size_t len, char **gbnf, Error *err);

/* json_schema_to_gbnf, then grammar_parse: the grammar that accepts the JSON texts the
 * schema describes. */
int json_schema_grammar(const char *schema, size_t len, Grammar *g, Error *err);

#endif

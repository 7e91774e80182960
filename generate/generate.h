/* The generation side's commands. Each returns 0 on success, or -1 with err describing the
 * problem in one line (the dispatcher prints it and exits 1). argv[0] is the command's name. */
#ifndef QUILL_GENERATE_GENERATE_H
#define QUILL_GENERATE_GENERATE_H

#include <stdbool.h>
#include <stddef.h>

#include "error.h"
#include "grammar.h"
#include "quill.h"

/* quill generate's exit status when an output lacks a word of --must-include (no beam
 * fitted them all within --max-tokens): the output is written, the words it lacks are
 * named on stderr. */
enum { GENERATE_EXIT_MISSED_WORDS = 3 };

/* quill generate: continue a prompt with a GGUF model. Returns 0, -1 with err set, or
 * GENERATE_EXIT_MISSED_WORDS. */
int cmd_generate(int argc, char **argv, Error *err);
/* quill chat: the interactive mode, as quill generate --interactive. */
int cmd_chat(int argc, char **argv, Error *err);
/* quill tokenize: the token ids of a text under a GGUF file's tokenizer. */
int cmd_tokenize(int argc, char **argv, Error *err);
/* The ids of text[0..len) under m (quill_tokenize) into *ids (malloc'd): their count, or
 * -1 with err set. The first buffer holds a token per byte and two more (bos, eos), enough
 * for any text; a larger count asks again with room for it. */
int generate_tokenize(const quill_model *m, const char *text, size_t len, bool add_special,
                      bool parse_special, quill_token **ids, Error *err);

/* Classifier-free guidance's longer side (quill_generate_params' guide): the tokens of
 * guide then prompt, or of negative then prompt, whichever are more (a NULL text: the
 * prompt alone); -1 with err set on error. What a guided run's cache must hold. */
int generate_guided_length(const quill_model *m, const char *guide, const char *negative,
                           const char *prompt, bool add_special, bool parse_special,
                           Error *err);

/* quill grammar: builds a GBNF grammar and prints accept or reject for texts (--check). */
/* Where a grammar comes from: one of these at most (quill generate has none when it samples
 * freely). */
typedef struct {
    const char *file;        /* a GBNF file: quill grammar's FILE, --grammar-file */
    const char *text;        /* --grammar: GBNF text */
    const char *json_schema; /* --json-schema: a schema's JSON text, or a FILE or @FILE */
    bool json;               /* --json: any JSON value */
} GrammarSource;
/* The flag that gives the grammar ("--json", ...), or NULL when there is none. */
const char *grammar_source_flag(const GrammarSource *s);
/* The grammar's GBNF text (*gbnf, malloc'd, *len bytes): a schema converted, a file read.
 * Two sources at once are an error. */
int grammar_source_gbnf(const GrammarSource *s, char **gbnf, size_t *len, Error *err);
/* Builds the grammar; its errors start with where it came from ("--grammar: line 1, column
 * 20: ...", "schema.json: #/properties/age: keyword 'not' is not supported"). */
int grammar_source_load(const GrammarSource *s, Grammar *g, Error *err);
int cmd_grammar(int argc, char **argv, Error *err);

/* quill bench MODEL.gguf: prompt and generation speed of a model. */
int cmd_bench_model(int argc, char **argv, Error *err);
/* quill info: what a GGUF file holds. */
int cmd_info(int argc, char **argv, Error *err);
/* quill quantize: a GGUF model rewritten with its weights in another type. */
int cmd_quantize(int argc, char **argv, Error *err);
/* quill merge: a GGUF model with a LoRA adapter written into its weights. */
int cmd_merge(int argc, char **argv, Error *err);

#endif

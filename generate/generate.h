/* The generation side's commands. Each returns 0 on success, or -1 with err describing the
 * problem in one line (the dispatcher prints it and exits 1). argv[0] is the command's name. */
#ifndef QUILL_GENERATE_GENERATE_H
#define QUILL_GENERATE_GENERATE_H

#include <stdbool.h>
#include <stddef.h>

#include "error.h"
#include "grammar.h"
#include "quill.h"

/* quill generate: continue a prompt with a GGUF model. */
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

/* quill grammar: builds a GBNF grammar and prints accept or reject for texts (--check). */
/* Builds a grammar from the file or the inline text of --grammar (exactly one); its errors
 * start with where the grammar came from ("--grammar: line 1, column 20: ..."). */
int grammar_load(const char *file, const char *inline_text, Grammar *g, Error *err);
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

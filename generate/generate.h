/* The generation side's commands. Each returns 0 on success, or -1 with err describing the
 * problem in one line (the dispatcher prints it and exits 1). argv[0] is the command's name. */
#ifndef QUILL_GENERATE_GENERATE_H
#define QUILL_GENERATE_GENERATE_H

#include "error.h"

/* quill generate: continue a prompt with a GGUF model. */
int cmd_generate(int argc, char **argv, Error *err);
/* quill chat: the interactive mode, as quill generate --interactive. */
int cmd_chat(int argc, char **argv, Error *err);
/* quill tokenize: the token ids of a text under a GGUF file's tokenizer. */
int cmd_tokenize(int argc, char **argv, Error *err);
/* quill bench MODEL.gguf: prompt and generation speed of a model. */
int cmd_bench_model(int argc, char **argv, Error *err);
/* quill info: what a GGUF file holds. */
int cmd_info(int argc, char **argv, Error *err);
/* quill quantize: a GGUF model rewritten with its weights in another type. */
int cmd_quantize(int argc, char **argv, Error *err);

#endif

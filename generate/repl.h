/* The interactive mode (quill generate --interactive, quill chat): repl.c. */
#ifndef QUILL_GENERATE_REPL_H
#define QUILL_GENERATE_REPL_H

#include "error.h"
#include "options.h"

/* Loads MODEL and runs the prompt loop until /quit, the end of input, or Ctrl+C at an empty
 * prompt. */
int repl_run(const char *model, GenerateOptions *o, Error *err);

#endif

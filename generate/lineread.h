/* Reading the REPL's lines: on a terminal through libedit (Debian's libedit-dev), which
 * gives line editing, the arrow keys and a history; from a pipe or a file with plain reads,
 * no prompt printed, so that scripts and tests drive the REPL through a pipe. This is the
 * only file that includes libedit's header. */
#ifndef QUILL_GENERATE_LINEREAD_H
#define QUILL_GENERATE_LINEREAD_H

#include <stdbool.h>

/* True when standard input is a terminal (then line_read uses libedit). */
bool line_input_is_terminal(void);

/* The next line, without its newline, malloc'd; NULL at the end of input. On a terminal
 * `prompt` is shown and the line is added to the history. */
char *line_read(const char *prompt);

#endif

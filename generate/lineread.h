/* Reading the REPL's lines: on a terminal through libedit (Debian's libedit-dev), which
 * gives line editing, the arrow keys and a history; from a pipe or a file with plain reads,
 * no prompt printed, so that scripts and tests drive the REPL through a pipe. This is the
 * only file that includes libedit's header.
 *
 * On a terminal, Ctrl+C at the prompt does what it does in a shell: with text typed, the
 * line is dropped ("^C" is shown) and a new prompt follows; on an empty line it leaves, as
 * the end of input (Ctrl+D) does. The terminal's interrupt key is read as a key while a
 * line is edited (libedit's "setty -isig"), so that the line editor, not a signal handler,
 * decides; outside the prompt (while a reply streams) it is a signal again. */
#ifndef QUILL_GENERATE_LINEREAD_H
#define QUILL_GENERATE_LINEREAD_H

#include <stdbool.h>

/* True when standard input is a terminal (then line_read uses libedit). */
bool line_input_is_terminal(void);

/* The next line, without its newline, malloc'd; NULL at the end of input (or a Ctrl+C on
 * an empty line). On a terminal `prompt` is shown, the line is added to the history, and
 * at the end the cursor is left at the start of a new line. */
char *line_read(const char *prompt);

#endif

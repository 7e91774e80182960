#include "lineread.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <histedit.h>

#include "buffer.h"

bool line_input_is_terminal(void)
{
    return isatty(STDIN_FILENO);
}

/* A line of any length from a stream, without its newline. */
static char *line_read_plain(FILE *in)
{
    size_t cap = 0, n = 0;
    char *line = NULL;
    Error unused;
    int c = EOF;
    bool room = buffer_reserve(&line, &cap, 1, 256, "a line", &unused) == 0;
    while (room && (c = fgetc(in)) != EOF && c != '\n') {
        room = buffer_reserve(&line, &cap, n + 2, 256, "a line", &unused) == 0;
        if (room)
            line[n++] = (char)c;
    }
    if (!room || (c == EOF && n == 0)) {
        free(line);
        return NULL;
    }
    line[n] = '\0';
    return line;
}

/* ---- the terminal ------------------------------------------------------------------------- */

/* The editor lives as long as the process: a REPL reads from one terminal. */
static struct {
    EditLine *el;
    History *history;
    const char *prompt;
    bool dropped; /* Ctrl+C dropped the line just read */
} term;

static char *editor_prompt(EditLine *el)
{
    (void)el;
    return (char *)term.prompt;
}

/* Ctrl+C: on an empty line, the end of input; otherwise the line ends, shown with "^C"
 * after it as a shell shows it, and is dropped. The text is written from where the cursor
 * is: the line is redrawn from its start, after a carriage return. */
static unsigned char editor_interrupt(EditLine *el, int key)
{
    (void)key;
    const LineInfo *line = el_line(el);
    if (line->lastchar == line->buffer)
        return CC_EOF;
    fprintf(stdout, "\r%s%.*s^C\n", term.prompt, (int)(line->lastchar - line->buffer),
            line->buffer);
    fflush(stdout);
    term.dropped = true;
    return CC_NEWLINE;
}

static bool editor_open(void)
{
    if (term.el)
        return true;
    term.el = el_init("quill", stdin, stdout, stderr);
    term.history = history_init();
    if (!term.el || !term.history)
        return false;
    HistEvent event;
    history(term.history, &event, H_SETSIZE, 1000);
    el_set(term.el, EL_EDITOR, "emacs");
    el_set(term.el, EL_HIST, history, term.history);
    el_set(term.el, EL_PROMPT, editor_prompt);
    el_set(term.el, EL_SIGNAL, 1); /* the terminal is restored if a signal arrives */
    el_set(term.el, EL_SETTY, "-d", "-isig", NULL);
    el_set(term.el, EL_ADDFN, "quill-interrupt", "drop the line, or leave on an empty one",
           editor_interrupt);
    el_set(term.el, EL_BIND, "^C", "quill-interrupt", NULL);
    el_source(term.el, NULL); /* the user's ~/.editrc */
    return true;
}

/* The next line typed that is not dropped by Ctrl+C, without its newline; NULL at the end. */
static char *line_read_terminal(const char *prompt)
{
    if (!editor_open())
        return line_read_plain(stdin);
    term.prompt = prompt;
    for (;;) {
        int count;
        term.dropped = false;
        const char *line = el_gets(term.el, &count);
        if (!line || count <= 0) {
            fputc('\n', stdout); /* the cursor is after the prompt: leave a clean line */
            fflush(stdout);
            return NULL;
        }
        if (term.dropped)
            continue;
        char *copy = strndup(line, strcspn(line, "\n"));
        HistEvent event;
        if (copy && *copy)
            history(term.history, &event, H_ENTER, copy);
        return copy;
    }
}

char *line_read(const char *prompt)
{
    return line_input_is_terminal() ? line_read_terminal(prompt) : line_read_plain(stdin);
}

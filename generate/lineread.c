#include "lineread.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <editline/readline.h>

bool line_input_is_terminal(void)
{
    return isatty(STDIN_FILENO);
}

/* A line of any length from a stream, without its newline. */
static char *line_read_plain(FILE *in)
{
    size_t cap = 256, n = 0;
    char *line = malloc(cap);
    int c = EOF;
    while (line && (c = fgetc(in)) != EOF && c != '\n') {
        if (n + 1 == cap) {
            char *grown = realloc(line, cap *= 2);
            if (!grown)
                free(line);
            line = grown;
        }
        if (line)
            line[n++] = (char)c;
    }
    if (!line || (c == EOF && n == 0)) {
        free(line);
        return NULL;
    }
    line[n] = '\0';
    return line;
}

char *line_read(const char *prompt)
{
    if (!line_input_is_terminal())
        return line_read_plain(stdin);
    char *line = readline(prompt);
    if (line && *line)
        add_history(line);
    return line;
}

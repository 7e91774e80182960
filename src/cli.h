/* Command-line parsing shared by the subcommands: a table of flags, each with its type, its
 * destination and its help line, parsed in one call. Errors name the flag:
 *   "unknown flag --topk", "--max-tokens expects an integer, got 'ten'",
 *   "--temperature 9 is out of range [0, 5]". */
#ifndef QUILL_CLI_H
#define QUILL_CLI_H

#include <stdbool.h>
#include <stdio.h>

#include "error.h"

typedef enum {
    FLAG_SWITCH, /* no value: sets a bool to true */
    FLAG_INT,    /* int, within [min, max] */
    FLAG_FLOAT,  /* float, within [min, max] */
    FLAG_STRING, /* const char *, pointing into argv */
} FlagType;

typedef struct {
    const char *name; /* without the dashes: "max-tokens" */
    FlagType type;
    void *dest;       /* bool *, int *, float * or const char ** */
    double min, max;  /* for INT and FLOAT */
    const char *help; /* one line, shown by --help */
} Flag;

/* Parses argv[first..argc-1]. Flags are "--name value", "--name=value" or, for switches,
 * "--name"; anything else is positional and is collected, in order, into positional
 * (at most max_positional entries). "--help" or "-h" sets *help and stops. */
int cli_parse(int argc, char **argv, int first, const Flag *flags, int n_flags,
              const char **positional, int max_positional, int *n_positional, bool *help,
              Error *err);

/* Writes one aligned line per flag: "  --name VALUE   help (default: ...)". The defaults are
 * read from the destinations, so call it before parsing. */
void cli_write_flag_help(FILE *out, const Flag *flags, int n_flags);

/* Parses a whole decimal integer / finite float; the message names `what`. */
int cli_parse_long(const char *what, const char *text, long min, long max, long *out, Error *err);
int cli_parse_double(const char *what, const char *text, double min, double max, double *out,
                     Error *err);

#endif

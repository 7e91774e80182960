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

/* A subcommand's command line: its help text, its flags and how many positional
 * arguments (MODEL, TEXT, ...) it takes. */
typedef struct {
    const char *usage; /* starts with "usage: quill <cmd> ...\n"; --help prints it, then the
                          flags */
    const Flag *flags;
    int n_flags;
    int min_positional, max_positional;
} CommandSpec;

/* Parses argv[1..argc-1] (argv[0] is the command's name). Flags are "--name value",
 * "--name=value" or, for switches, "--name"; anything else is positional and is collected,
 * in order, into positional. Returns 0 to run the command; 1 when --help (or -h) asked
 * for the usage, which has then been written to help_out; -1 with err set on a bad
 * argument. */
int cli_parse_command(const CommandSpec *spec, int argc, char **argv, const char **positional,
                      int *n_positional, FILE *help_out, Error *err);

/* Parses a whole decimal integer / finite float; the message names `what`. */
int cli_parse_long(const char *what, const char *text, long min, long max, long *out, Error *err);
int cli_parse_double(const char *what, const char *text, double min, double max, double *out,
                     Error *err);

#endif

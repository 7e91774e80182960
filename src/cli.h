/* Command-line parsing, one parser for every subcommand: a table of flags, each with its
 * type, its destination and its help line, parsed in one call; --help is generated from the
 * same table. A flag's value is spelled "--name value" or "--name=value" (or "-x value" and
 * "-x=value" for a flag with a short name); a switch is "--name", "--no-name" clears it, and
 * "--name=VALUE" sets it to on/off, yes/no, true/false or 1/0. Errors name the flag:
 *   "unknown flag --topk", "--max-tokens expects an integer, got 'ten'",
 *   "--temperature 9 is out of range [0, 5]". */
#ifndef QUILL_CLI_H
#define QUILL_CLI_H

#include <stdbool.h>
#include <stdio.h>

#include "error.h"

/* A list of owned strings (file names, stop strings, ...). */
typedef struct {
    char **items;
    int n;
} StringList;

int string_list_append(StringList *l, const char *s, Error *err);
int string_list_copy(StringList *dst, const StringList *src, Error *err);
void string_list_clear(StringList *l); /* frees the strings; the list is empty after */

typedef enum {
    FLAG_SWITCH, /* bool: --name sets it, --no-name clears it, --name=off (no, false, 0) too */
    FLAG_INT,    /* int, within [min, max] */
    FLAG_FLOAT,  /* float, within [min, max] */
    FLAG_STRING, /* const char *, pointing into argv */
    FLAG_CHOICE, /* const char *: one of `choices`, pointing to the table's own string */
    FLAG_LIST,   /* StringList: every value up to the next flag. The first occurrence on a
                    command line replaces what the list held (a config file's value, say);
                    later occurrences add to it, so "--stop a --stop b" keeps both. */
} FlagType;

typedef struct {
    const char *name;           /* without the dashes: "max-tokens" */
    FlagType type;
    void *dest;                 /* bool *, int *, float *, const char ** or StringList * */
    double min, max;            /* for INT and FLOAT: the range [min, max] */
    const char *help;           /* one line, shown by --help */
    const char *const *choices; /* for CHOICE: the allowed values, NULL-terminated */
    char short_name;            /* also spelled "-x" (as llama-bench's -p, -n), or 0 */
    bool above_min;             /* for FLOAT: min itself is outside, (min, max] (a divisor) */
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

/* Parses argv[1..argc-1] (argv[0] is the command's name). Anything that does not start
 * with "--" is positional and is collected, in order, into positional. Returns 0 to run the
 * command; 1 when --help (or -h) asked for the usage, which has then been written to
 * help_out; -1 with err set on a bad argument. */
int cli_parse_command(const CommandSpec *spec, int argc, char **argv, const char **positional,
                      int *n_positional, FILE *help_out, Error *err);

/* Stores one value into a flag's destination as the parser does ("" for a switch means
 * on, as do on, yes, true and 1; a LIST gets the value appended); the message names `what`. For settings changed
 * while a program runs (the REPL's /set). */
int cli_flag_set(const Flag *f, const char *value, const char *what, Error *err);

/* Finds a flag by name (NULL when there is none). */
const Flag *cli_flag_find(const Flag *flags, int n_flags, const char *name, size_t len);

/* Writes the flags' help lines ("  --name N   help (default 8)"), defaults read from the
 * destinations. */
void cli_write_flag_help(FILE *out, const Flag *flags, int n_flags);

/* Writes each flag's current value, one per line ("  temperature = 0.8"): a program's
 * settings (the REPL's /status). */
void cli_write_flag_values(FILE *out, const Flag *flags, int n_flags);

/* Parses a whole decimal integer / finite float; the message names `what`. */
int cli_parse_long(const char *what, const char *text, long min, long max, long *out, Error *err);
int cli_parse_double(const char *what, const char *text, double min, double max, double *out,
                     Error *err);

#endif

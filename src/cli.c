#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

int cli_parse_long(const char *what, const char *text, long min, long max, long *out, Error *err)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (*text == '\0' || *end != '\0' || errno == ERANGE)
        return error_set(err, "%s expects an integer, got '%s'", what, text);
    if (v < min || v > max)
        return error_set(err, "%s %ld is out of range [%ld, %ld]", what, v, min, max);
    *out = v;
    return 0;
}

int cli_parse_double(const char *what, const char *text, double min, double max, double *out,
                     Error *err)
{
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (*text == '\0' || *end != '\0' || errno == ERANGE || !isfinite(v))
        return error_set(err, "%s expects a number, got '%s'", what, text);
    if (v < min || v > max)
        return error_set(err, "%s %g is out of range [%g, %g]", what, v, min, max);
    *out = v;
    return 0;
}

static const Flag *flag_find(const Flag *flags, int n_flags, const char *name, size_t len)
{
    for (int i = 0; i < n_flags; i++)
        if (strlen(flags[i].name) == len && strncmp(flags[i].name, name, len) == 0)
            return &flags[i];
    return NULL;
}

static int flag_store(const Flag *f, const char *value, Error *err)
{
    char what[64];
    snprintf(what, sizeof what, "--%s", f->name);
    long l = 0;
    double d = 0.0;
    switch (f->type) {
    case FLAG_SWITCH:
        *(bool *)f->dest = true;
        return 0;
    case FLAG_INT:
        if (cli_parse_long(what, value, (long)f->min, (long)f->max, &l, err) != 0)
            return -1;
        *(int *)f->dest = (int)l;
        return 0;
    case FLAG_FLOAT:
        if (cli_parse_double(what, value, f->min, f->max, &d, err) != 0)
            return -1;
        *(float *)f->dest = (float)d;
        return 0;
    case FLAG_STRING:
        *(const char **)f->dest = value;
        return 0;
    }
    return error_set(err, "%s: unknown flag type", what);
}

/* One line per flag: "  --name N   help (default 8)". Defaults are read from the
 * destinations, which still hold them when --help stops the parse. */
static void write_flag_help(FILE *out, const Flag *flags, int n_flags)
{
    for (int i = 0; i < n_flags; i++) {
        const Flag *f = &flags[i];
        char left[48];
        const char *value = f->type == FLAG_INT      ? " N"
                            : f->type == FLAG_FLOAT  ? " X"
                            : f->type == FLAG_STRING ? " S"
                                                     : "";
        snprintf(left, sizeof left, "--%s%s", f->name, value);
        fprintf(out, "  %-22s %s", left, f->help);
        if (f->type == FLAG_INT)
            fprintf(out, " (default %d)", *(int *)f->dest);
        else if (f->type == FLAG_FLOAT)
            fprintf(out, " (default %g)", *(float *)f->dest);
        else if (f->type == FLAG_STRING && *(const char **)f->dest && **(const char **)f->dest)
            fprintf(out, " (default %s)", *(const char **)f->dest);
        fputc('\n', out);
    }
}

/* "usage: quill x ARGS [options]" without the rest of the help text. */
static int error_usage(Error *err, const CommandSpec *spec, const char *command)
{
    int len = (int)strcspn(spec->usage, "\n");
    return error_set(err, "%.*s (see quill %s --help)", len, spec->usage, command);
}

static int parse_flag(const CommandSpec *spec, int argc, char **argv, int *i, Error *err)
{
    const char *name = argv[*i] + 2, *eq = strchr(name, '=');
    size_t len = eq ? (size_t)(eq - name) : strlen(name);
    const Flag *f = flag_find(spec->flags, spec->n_flags, name, len);
    if (!f)
        return error_set(err, "unknown flag --%.*s (see quill %s --help)", (int)len, name,
                         argv[0]);
    const char *value = eq ? eq + 1 : NULL;
    if (f->type == FLAG_SWITCH && value)
        return error_set(err, "--%s takes no value", f->name);
    if (f->type != FLAG_SWITCH && !value) {
        if (*i + 1 >= argc)
            return error_set(err, "--%s needs a value", f->name);
        value = argv[++*i];
    }
    return flag_store(f, value, err);
}

int cli_parse_command(const CommandSpec *spec, int argc, char **argv, const char **positional,
                      int *n_positional, FILE *help_out, Error *err)
{
    *n_positional = 0;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            fputs(spec->usage, help_out);
            fputs("\noptions:\n", help_out);
            write_flag_help(help_out, spec->flags, spec->n_flags);
            return 1;
        }
        if (strncmp(arg, "--", 2) == 0 && arg[2] != '\0') {
            if (parse_flag(spec, argc, argv, &i, err) != 0)
                return -1;
        } else if (*n_positional < spec->max_positional) {
            positional[(*n_positional)++] = arg;
        } else {
            return error_set(err, "unexpected argument '%s' (see quill %s --help)", arg, argv[0]);
        }
    }
    if (*n_positional < spec->min_positional)
        return error_usage(err, spec, argv[0]);
    return 0;
}

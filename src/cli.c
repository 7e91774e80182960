#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The parser remembers which LIST flags it has seen on the current command line in a
 * fixed table; no command has nearly this many flags. */
enum { CLI_MAX_FLAGS = 128 };

int string_list_append(StringList *l, const char *s, Error *err)
{
    char **grown = realloc(l->items, (size_t)(l->n + 1) * sizeof *grown);
    if (!grown)
        return error_set(err, "out of memory");
    l->items = grown;
    l->items[l->n] = strdup(s);
    if (!l->items[l->n])
        return error_set(err, "out of memory");
    l->n++;
    return 0;
}

int string_list_copy(StringList *dst, const StringList *src, Error *err)
{
    *dst = (StringList){0};
    for (int i = 0; i < src->n; i++)
        if (string_list_append(dst, src->items[i], err) != 0)
            return -1;
    return 0;
}

void string_list_clear(StringList *l)
{
    for (int i = 0; i < l->n; i++)
        free(l->items[i]);
    free(l->items);
    *l = (StringList){0};
}

int cli_parse_long(const char *what, const char *text, long min, long max, long *out, Error *err)
{
    char *end;
    char quoted[64];
    errno = 0;
    long v = strtol(text, &end, 10);
    if (*text == '\0' || *end != '\0' || errno == ERANGE)
        return error_set(err, "%s expects an integer, got '%s'", what,
                         error_quote(quoted, sizeof quoted, text, strlen(text)));
    if (v < min || v > max)
        return error_set(err, "%s %ld is out of range [%ld, %ld]", what, v, min, max);
    *out = v;
    return 0;
}

int cli_parse_double(const char *what, const char *text, double min, double max, double *out,
                     Error *err)
{
    char *end;
    char quoted[64];
    errno = 0;
    double v = strtod(text, &end);
    if (*text == '\0' || *end != '\0' || errno == ERANGE || !isfinite(v))
        return error_set(err, "%s expects a number, got '%s'", what,
                         error_quote(quoted, sizeof quoted, text, strlen(text)));
    if (v < min || v > max)
        return error_set(err, "%s %g is out of range [%g, %g]", what, v, min, max);
    *out = v;
    return 0;
}

const Flag *cli_flag_find(const Flag *flags, int n_flags, const char *name, size_t len)
{
    for (int i = 0; i < n_flags; i++)
        if (strlen(flags[i].name) == len && strncmp(flags[i].name, name, len) == 0)
            return &flags[i];
    return NULL;
}

static int choice_store(const Flag *f, const char *value, const char *what, Error *err)
{
    char allowed[256] = "", quoted[64];
    for (const char *const *c = f->choices; *c; c++) {
        if (strcmp(value, *c) == 0) {
            *(const char **)f->dest = *c;
            return 0;
        }
        size_t used = strlen(allowed);
        snprintf(allowed + used, sizeof allowed - used, "%s%s", used ? ", " : "", *c);
    }
    return error_set(err, "%s expects one of %s, got '%s'", what, allowed,
                     error_quote(quoted, sizeof quoted, value, strlen(value)));
}

/* A switch's value: the spellings of on and off that shells, config files and other tools
 * use, in any case; "" (the bare --name) is on. */
static int switch_parse(const char *what, const char *value, bool *on, Error *err)
{
    static const char *const spellings[][2] = {
        {"on", "off"}, {"yes", "no"}, {"true", "false"}, {"1", "0"}};
    for (size_t i = 0; i < sizeof spellings / sizeof *spellings; i++)
        for (int off = 0; off < 2; off++)
            if (strcasecmp(value, spellings[i][off]) == 0) {
                *on = !off;
                return 0;
            }
    if (*value == '\0') {
        *on = true;
        return 0;
    }
    char quoted[64];
    return error_set(err, "%s expects on or off (yes/no, true/false, 1/0), got '%s'", what,
                     error_quote(quoted, sizeof quoted, value, strlen(value)));
}

int cli_flag_set(const Flag *f, const char *value, const char *what, Error *err)
{
    long l = 0;
    double d = 0.0;
    switch (f->type) {
    case FLAG_SWITCH:
        return switch_parse(what, value, f->dest, err);
    case FLAG_INT:
        if (cli_parse_long(what, value, (long)f->min, (long)f->max, &l, err) != 0)
            return -1;
        *(int *)f->dest = (int)l;
        return 0;
    case FLAG_FLOAT:
        if (cli_parse_double(what, value, f->min, f->max, &d, err) != 0)
            return -1;
        if (f->above_min && d == f->min)
            return error_set(err, "%s %g is out of range (%g, %g]", what, d, f->min, f->max);
        *(float *)f->dest = (float)d;
        return 0;
    case FLAG_STRING:
        *(const char **)f->dest = value;
        return 0;
    case FLAG_CHOICE:
        return choice_store(f, value, what, err);
    case FLAG_LIST:
        return string_list_append(f->dest, value, err);
    }
    return error_set(err, "%s: unknown flag type", what);
}

/* The text after "--name " in a help line: what kind of value the flag takes. */
static const char *flag_value_hint(const Flag *f)
{
    switch (f->type) {
    case FLAG_INT: return " N";
    case FLAG_FLOAT: return " X";
    case FLAG_STRING: return " S";
    case FLAG_CHOICE: return " NAME";
    case FLAG_LIST: return " S...";
    case FLAG_SWITCH: break;
    }
    return "";
}

static void write_flag_default(FILE *out, const Flag *f)
{
    const char *text = NULL;
    const StringList *list = f->dest;
    switch (f->type) {
    case FLAG_INT: fprintf(out, " (default %d)", *(int *)f->dest); return;
    case FLAG_FLOAT: fprintf(out, " (default %g)", *(float *)f->dest); return;
    case FLAG_STRING:
    case FLAG_CHOICE: text = *(const char **)f->dest; break;
    case FLAG_LIST: text = list->n > 0 ? list->items[0] : NULL; break;
    case FLAG_SWITCH:
        if (*(bool *)f->dest)
            fprintf(out, " (on by default)");
        return;
    }
    if (text && *text)
        fprintf(out, " (default %s)", text);
}

void cli_write_flag_help(FILE *out, const Flag *flags, int n_flags)
{
    for (int i = 0; i < n_flags; i++) {
        const Flag *f = &flags[i];
        char left[48];
        if (f->short_name)
            snprintf(left, sizeof left, "-%c, --%s%s", f->short_name, f->name, flag_value_hint(f));
        else
            snprintf(left, sizeof left, "--%s%s", f->name, flag_value_hint(f));
        fprintf(out, "  %-24s %s", left, f->help);
        write_flag_default(out, f);
        fputc('\n', out);
    }
}

void cli_write_flag_values(FILE *out, const Flag *flags, int n_flags)
{
    for (int i = 0; i < n_flags; i++) {
        const Flag *f = &flags[i];
        const StringList *list = f->dest;
        fprintf(out, "  %-20s ", f->name);
        switch (f->type) {
        case FLAG_SWITCH: fprintf(out, "%s", *(bool *)f->dest ? "on" : "off"); break;
        case FLAG_INT: fprintf(out, "%d", *(int *)f->dest); break;
        case FLAG_FLOAT: fprintf(out, "%g", *(float *)f->dest); break;
        case FLAG_STRING:
        case FLAG_CHOICE:
            fprintf(out, "%s", *(const char **)f->dest ? *(const char **)f->dest : "(none)");
            break;
        case FLAG_LIST:
            for (int j = 0; j < list->n; j++)
                fprintf(out, j ? ", %s" : "%s", list->items[j]);
            if (list->n == 0)
                fprintf(out, "(none)");
            break;
        }
        fputc('\n', out);
    }
}

/* "usage: quill x ARGS [options]" without the rest of the help text. */
static int error_usage(Error *err, const CommandSpec *spec, const char *command)
{
    int len = (int)strcspn(spec->usage, "\n");
    return error_set(err, "%.*s (see quill %s --help)", len, spec->usage, command);
}

/* The flag an argument names: "--name", "--name=value", or "--no-name" for a switch. */
static const Flag *flag_for_argument(const CommandSpec *spec, const char *name, size_t len,
                                     bool *negated)
{
    *negated = false;
    const Flag *f = cli_flag_find(spec->flags, spec->n_flags, name, len);
    if (f || len <= 3 || strncmp(name, "no-", 3) != 0)
        return f;
    f = cli_flag_find(spec->flags, spec->n_flags, name + 3, len - 3);
    *negated = f && f->type == FLAG_SWITCH;
    return *negated ? f : NULL;
}

/* The flag "-x" names, or NULL. */
static const Flag *flag_by_short_name(const CommandSpec *spec, char x)
{
    for (int i = 0; i < spec->n_flags; i++)
        if (spec->flags[i].short_name == x)
            return &spec->flags[i];
    return NULL;
}

/* "--name..." always, and "-x" or "-x=..." (one letter) when a flag has that short name. */
static bool is_flag_argument(const CommandSpec *spec, const char *arg)
{
    if (strncmp(arg, "--", 2) == 0 && arg[2] != '\0')
        return true;
    return arg[0] == '-' && arg[1] != '\0' && (arg[2] == '\0' || arg[2] == '=') &&
           flag_by_short_name(spec, arg[1]);
}

/* Parses the flag at argv[*i]: f is the flag it names, shown as `what` in messages, and
 * value is its "=value" part (NULL when there is none); values that follow are consumed. */
static int parse_flag(const CommandSpec *spec, const Flag *f, bool negated, const char *what,
                      const char *value, int argc, char **argv, int *i, bool *list_seen,
                      Error *err)
{
    if (f->type == FLAG_SWITCH) {
        if (value && negated)
            return error_set(err, "%s takes no value", what);
        if (value)
            return cli_flag_set(f, value, what, err);
        *(bool *)f->dest = !negated;
        return 0;
    }
    if (f->type == FLAG_LIST && !*list_seen) {
        string_list_clear(f->dest);
        *list_seen = true;
    }
    bool inline_value = value != NULL;
    if (!value) {
        if (*i + 1 >= argc)
            return error_set(err, "%s needs a value", what);
        value = argv[++*i];
    }
    if (cli_flag_set(f, value, what, err) != 0)
        return -1;
    /* a list also takes the values that follow, up to the next flag (-n 5 included) */
    while (f->type == FLAG_LIST && !inline_value && *i + 1 < argc &&
           !is_flag_argument(spec, argv[*i + 1]))
        if (cli_flag_set(f, argv[++*i], what, err) != 0)
            return -1;
    return 0;
}

/* "--name", "--name=value", "--no-name", "-x" or "-x=value": finds the flag and parses it. */
static int parse_argument_flag(const CommandSpec *spec, int argc, char **argv, int *i,
                               bool *list_seen, Error *err)
{
    const char *arg = argv[*i], *value = NULL;
    char what[80], quoted[64];
    const Flag *f;
    bool negated = false;
    if (arg[1] != '-') {
        f = flag_by_short_name(spec, arg[1]);
        value = arg[2] == '=' ? arg + 3 : NULL;
        snprintf(what, sizeof what, "-%c", arg[1]);
    } else {
        const char *name = arg + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        f = flag_for_argument(spec, name, len, &negated);
        value = eq ? eq + 1 : NULL;
        snprintf(what, sizeof what, "--%.*s", (int)len, name);
    }
    if (!f)
        return error_set(err, "unknown flag %s (see quill %s --help)",
                         error_quote(quoted, sizeof quoted, what, strlen(what)), argv[0]);
    return parse_flag(spec, f, negated, what, value, argc, argv, i, &list_seen[f - spec->flags],
                      err);
}

int cli_parse_command(const CommandSpec *spec, int argc, char **argv, const char **positional,
                      int *n_positional, FILE *help_out, Error *err)
{
    bool list_seen[CLI_MAX_FLAGS] = {false};
    if (spec->n_flags > CLI_MAX_FLAGS)
        return error_set(err, "quill %s: %d flags, more than the parser's %d", argv[0],
                         spec->n_flags, CLI_MAX_FLAGS);
    *n_positional = 0;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            fputs(spec->usage, help_out);
            fputs("\noptions:\n", help_out);
            cli_write_flag_help(help_out, spec->flags, spec->n_flags);
            return 1;
        }
        if (is_flag_argument(spec, arg)) {
            if (parse_argument_flag(spec, argc, argv, &i, list_seen, err) != 0)
                return -1;
        } else if (*n_positional < spec->max_positional) {
            positional[(*n_positional)++] = arg;
        } else {
            char quoted[64];
            return error_set(err, "unexpected argument '%s' (see quill %s --help)",
                             error_quote(quoted, sizeof quoted, arg, strlen(arg)), argv[0]);
        }
    }
    if (*n_positional < spec->min_positional)
        return error_usage(err, spec, argv[0]);
    return 0;
}

/* JSON Schema to GBNF (json_schema.h). The converter walks the schema once: each schema it
 * meets becomes one rule whose body is GBNF text, named after where it sits ("root-tags-item"),
 * and the rules for JSON's own pieces (string, number, space, ...) are added the first time
 * something uses them. Every value rule ends with `space`, so whitespace may follow any
 * token, as in llama.cpp's grammars; a keyword the converter does not handle is an error,
 * never skipped, because skipping it would let the grammar accept texts the schema
 * refuses. */
#include "json_schema.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buffer.h"
#include "utf8.h"

/* ---- growing text ------------------------------------------------------------------- */

/* A string that grows as it is written. A failed allocation is remembered (`failed`) and
 * reported once by whoever finishes the text, so that building a rule's body reads as a
 * run of writes. */
typedef struct {
    char *data;
    size_t len, cap;
    bool failed;
} Text;

static void text_add(Text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void text_add(Text *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (t->failed || n < 0 ||
        buffer_reserve(&t->data, &t->cap, t->len + (size_t)n + 1, 256, "a grammar", NULL) != 0) {
        t->failed = true;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(t->data + t->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    t->len += (size_t)n;
}

/* ---- the rules of JSON itself --------------------------------------------------------- */

/* Each rule of JSON's own, and the rules it uses. Whitespace after a token: nothing, one
 * space, or a line break and up to 20 spaces or tabs of indentation (llama.cpp's choice).
 * Bounded, so that a model can always be made to move on: there is no way to write
 * whitespace forever. */
typedef struct {
    const char *name, *body;
    const char *uses[6];
} Primitive;

static const Primitive PRIMITIVES[] = {
    {"space", "( \" \" | \"\\n\" [ \\t]{0,20} )?", {0}},
    {"value", "object | array | string | number | boolean | null",
     {"object", "array", "string", "number", "boolean", "null"}},
    {"object", "\"{\" space ( string \":\" space value ( \",\" space string \":\" space value )* )? "
               "\"}\" space",
     {"space", "string", "value"}},
    {"array", "\"[\" space ( value ( \",\" space value )* )? \"]\" space", {"space", "value"}},
    {"string", "\"\\\"\" char* \"\\\"\" space", {"char", "space"}},
    /* one character of a JSON string: any but a quote, a backslash or a control character,
     * or an escape; \u escapes of UTF-16 surrogates (D800 to DFFF) are left out, so that
     * each char is one character of the string JSON reads, as minLength and maxLength count
     * (a character beyond U+FFFF is written as itself) */
    {"char", "[^\"\\\\\\x00-\\x1F] | \"\\\\\" ( [\"\\\\/bfnrt] | \"u\" ( [0-9a-cA-CefEF] [0-9a-fA-F]{3} | "
             "[dD] [0-7] [0-9a-fA-F]{2} ) )",
     {0}},
    /* numbers of at most 16 digits each side, as llama.cpp writes them */
    {"number", "\"-\"? integral-part ( \".\" decimal-part )? ( [eE] [-+]? integral-part )? space",
     {"integral-part", "decimal-part", "space"}},
    {"integer", "\"-\"? integral-part space", {"integral-part", "space"}},
    {"integral-part", "\"0\" | [1-9] [0-9]{0,15}", {0}},
    {"decimal-part", "[0-9]{1,16}", {0}},
    {"boolean", "( \"true\" | \"false\" ) space", {"space"}},
    {"null", "\"null\" space", {"space"}},
    {"date", "[0-9]{4} \"-\" ( \"0\" [1-9] | \"1\" [0-2] ) \"-\" ( \"0\" [1-9] | [12] [0-9] | \"3\" [01] )",
     {0}},
    {"time", "( [01] [0-9] | \"2\" [0-3] ) \":\" [0-5] [0-9] \":\" [0-5] [0-9] ( \".\" [0-9]{3} )? "
             "( \"Z\" | [+-] ( [01] [0-9] | \"2\" [0-3] ) \":\" [0-5] [0-9] )",
     {0}},
    {"date-time", "date \"T\" time", {"date", "time"}},
    {"date-string", "\"\\\"\" date \"\\\"\" space", {"date", "space"}},
    {"time-string", "\"\\\"\" time \"\\\"\" space", {"time", "space"}},
    {"date-time-string", "\"\\\"\" date-time \"\\\"\" space", {"date-time", "space"}},
    {"uuid-string", "\"\\\"\" [0-9a-fA-F]{8} \"-\" [0-9a-fA-F]{4} \"-\" [0-9a-fA-F]{4} \"-\" "
                    "[0-9a-fA-F]{4} \"-\" [0-9a-fA-F]{12} \"\\\"\" space",
     {"space"}},
    /* one character of a key or a pattern written as itself: no escapes */
    {"plain-char", "[^\"\\\\\\x00-\\x1F]", {0}},
};
#define N_PRIMITIVES (sizeof PRIMITIVES / sizeof *PRIMITIVES)

/* Integers have at most 16 digits, as llama.cpp's integral-part: a bound the schema leaves
 * open becomes this one. */
#define INTEGER_LIMIT 9999999999999999LL
/* grammar.c writes out every copy of a repetition and refuses counts above this */
#define MAX_REPEAT 10000

/* ---- the converter ---------------------------------------------------------------------- */

/* A rule being made: its name is taken when the rule is started, so that a $ref can point
 * at a rule whose body is still being written (a recursive schema); body is NULL until
 * then. */
typedef struct {
    char *name;
    char *body;
} Rule;

/* A $ref already followed: the rule it became. */
typedef struct {
    char *ref;
    const char *rule;
} RefRule;

typedef struct {
    const cJSON *document; /* what "#/..." points into */
    Rule *rules;
    size_t n_rules, cap_rules;
    RefRule *refs;
    size_t n_refs, cap_refs;
    char where[256]; /* the JSON pointer of the schema being read: "" for the whole document */
    Error *err;
} Converter;

static bool rule_exists(const Converter *c, const char *name)
{
    for (size_t i = 0; i < c->n_rules; i++)
        if (strcmp(c->rules[i].name, name) == 0)
            return true;
    for (size_t i = 0; i < N_PRIMITIVES; i++)
        if (strcmp(PRIMITIVES[i].name, name) == 0)
            return true;
    return false;
}

/* Starts a rule named after `base` (characters a rule name cannot hold become '-'; a name
 * already taken gets "-2", "-3", ...). Returns its index, or -1 on out of memory. */
static long rule_start(Converter *c, const char *base)
{
    char name[160];
    size_t n = 0;
    for (; base[n] && n < 120; n++) {
        char ch = base[n];
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
        name[n] = ok ? ch : '-';
    }
    name[n] = '\0';
    for (int k = 2; rule_exists(c, name); k++)
        snprintf(name + n, sizeof name - n, "-%d", k);
    if (buffer_reserve_items(&c->rules, &c->cap_rules, c->n_rules + 1, sizeof *c->rules, 32,
                             "grammar rules", c->err) != 0)
        return -1;
    char *copy = strdup(name);
    if (!copy) {
        error_set(c->err, "out of memory");
        return -1;
    }
    c->rules[c->n_rules] = (Rule){copy, NULL};
    return (long)c->n_rules++;
}

/* Gives rule `index` its body (taking t's text). Returns the rule's name, or NULL when the
 * text could not be written. */
static const char *rule_finish(Converter *c, long index, Text *t)
{
    if (index < 0)
        return NULL;
    if (t->failed || !t->data) {
        free(t->data);
        error_set(c->err, "out of memory for a grammar");
        return NULL;
    }
    c->rules[index].body = t->data;
    return c->rules[index].name;
}

/* A rule with this body, named after `base`. */
static const char *rule_add(Converter *c, const char *base, Text *t)
{
    long index = rule_start(c, base);
    if (index < 0) {
        free(t->data);
        return NULL;
    }
    return rule_finish(c, index, t);
}

/* The rule of JSON's own called `name`, added with those it uses the first time. */
static const char *primitive(Converter *c, const char *name)
{
    for (size_t i = 0; i < c->n_rules; i++)
        if (strcmp(c->rules[i].name, name) == 0)
            return c->rules[i].name;
    const Primitive *p = NULL;
    for (size_t i = 0; i < N_PRIMITIVES; i++)
        if (strcmp(PRIMITIVES[i].name, name) == 0)
            p = &PRIMITIVES[i];
    if (buffer_reserve_items(&c->rules, &c->cap_rules, c->n_rules + 1, sizeof *c->rules, 32,
                             "grammar rules", c->err) != 0)
        return NULL;
    Rule r = {strdup(p->name), strdup(p->body)};
    if (!r.name || !r.body) {
        free(r.name);
        free(r.body);
        error_set(c->err, "out of memory");
        return NULL;
    }
    c->rules[c->n_rules++] = r;
    for (int i = 0; i < 6 && p->uses[i]; i++)
        if (!primitive(c, p->uses[i]))
            return NULL;
    return r.name;
}

/* An error about the schema being read: "#/properties/age: ...". */
static const char *fail(Converter *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static const char *fail(Converter *c, const char *fmt, ...)
{
    char message[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    error_set(c->err, "#%s: %s", c->where, message);
    return NULL;
}

/* Appends a step to the JSON pointer of where the converter reads ('~' and '/' escaped as
 * RFC 6901 says); returns the length to go back to. */
static size_t where_push(Converter *c, const char *step)
{
    size_t before = strlen(c->where);
    size_t n = before;
    if (n + 1 < sizeof c->where)
        c->where[n++] = '/';
    for (; *step && n + 2 < sizeof c->where; step++) {
        if (*step == '~' || *step == '/') {
            c->where[n++] = '~';
            c->where[n++] = *step == '~' ? '0' : '1';
        } else {
            c->where[n++] = *step;
        }
    }
    c->where[n] = '\0';
    return before;
}

static void where_pop(Converter *c, size_t before)
{
    c->where[before] = '\0';
}

/* ---- GBNF literals ---------------------------------------------------------------------- */

/* Writes bytes[0..n) as a GBNF literal: quotes, backslashes and control characters escaped,
 * other characters (UTF-8 included) as they are. */
static void add_literal(Text *t, const char *bytes, size_t n)
{
    text_add(t, "\"");
    for (size_t i = 0; i < n; i++) {
        unsigned char b = (unsigned char)bytes[i];
        if (b == '"' || b == '\\')
            text_add(t, "\\%c", b);
        else if (b < 0x20 || b == 0x7F)
            text_add(t, "\\x%02X", b);
        else
            text_add(t, "%c", b);
    }
    text_add(t, "\"");
}

/* Writes a code point inside a GBNF class: letters and digits as themselves, anything else
 * in hex, so that ']', '-', '^' and '\' never need thought. */
static void add_class_char(Text *t, uint32_t cp)
{
    if ((cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') || (cp >= '0' && cp <= '9'))
        text_add(t, "%c", (char)cp);
    else if (cp < 0x100)
        text_add(t, "\\x%02X", (unsigned)cp);
    else if (cp < 0x10000)
        text_add(t, "\\u%04X", (unsigned)cp);
    else
        text_add(t, "\\U%08X", (unsigned)cp);
}

/* Whether a code point must be escaped in a JSON string. */
static bool json_needs_escape(uint32_t cp)
{
    return cp < 0x20 || cp == '"' || cp == '\\';
}

/* Appends a code point to t as a JSON string's text writes it: UTF-8, or the escape for
 * those that need one (\" \\ \n \t \r, \u00XX). */
static void add_json_char(Text *t, uint32_t cp)
{
    if (cp == '"' || cp == '\\')
        text_add(t, "\\%c", (char)cp);
    else if (cp == '\n' || cp == '\t' || cp == '\r')
        text_add(t, "\\%c", cp == '\n' ? 'n' : cp == '\t' ? 't' : 'r');
    else if (cp < 0x20)
        text_add(t, "\\u%04X", (unsigned)cp);
    else if (cp < 0x80)
        text_add(t, "%c", (char)cp);
    else if (cp < 0x800)
        text_add(t, "%c%c", 0xC0 | cp >> 6, 0x80 | (cp & 0x3F));
    else if (cp < 0x10000)
        text_add(t, "%c%c%c", 0xE0 | cp >> 12, 0x80 | (cp >> 6 & 0x3F), 0x80 | (cp & 0x3F));
    else
        text_add(t, "%c%c%c%c", 0xF0 | cp >> 18, 0x80 | (cp >> 12 & 0x3F),
                 0x80 | (cp >> 6 & 0x3F), 0x80 | (cp & 0x3F));
}

/* Writes a property name (UTF-8: the whole schema was checked) as JSON writes it, quotes
 * included, as one GBNF literal. */
static void add_key_literal(Text *t, const char *name)
{
    Text json = {0};
    text_add(&json, "\"");
    const unsigned char *p = (const unsigned char *)name, *end = p + strlen(name);
    while (p < end) {
        uint32_t cp;
        p += utf8_decode(p, (size_t)(end - p), &cp);
        add_json_char(&json, cp);
    }
    text_add(&json, "\"");
    add_literal(t, json.data ? json.data : "", json.len);
    t->failed |= json.failed;
    free(json.data);
}

/* Writes a repetition, from min to max times (max -1: no limit), in its shortest form: "*",
 * "+", "?", "{m}", "{m,}" or "{m,n}"; nothing for exactly once. */
static void add_repeat(Text *t, long min, long max)
{
    if (min == 0 && max < 0)
        text_add(t, "*");
    else if (min == 1 && max < 0)
        text_add(t, "+");
    else if (min == 0 && max == 1)
        text_add(t, "?");
    else if (max < 0)
        text_add(t, "{%ld,}", min);
    else if (min == max && min != 1)
        text_add(t, "{%ld}", min);
    else if (min != max)
        text_add(t, "{%ld,%ld}", min, max);
}

/* Writes a JSON value exactly as cJSON prints it (no whitespace), as a GBNF literal. */
static int add_json_literal(Converter *c, Text *t, const cJSON *value)
{
    char *json = cJSON_PrintUnformatted(value);
    if (!json)
        return error_set(c->err, "out of memory");
    add_literal(t, json, strlen(json));
    free(json);
    return 0;
}

/* ---- integers in a range ------------------------------------------------------------------ */

/* Writes the decimal strings of n digits from lo to hi (both n digits, lo <= hi), digit by
 * digit: where the first digits differ, the range splits into lo's first digit followed by
 * anything from the rest of lo up to 99..9, the digits strictly between followed by any n-1
 * digits, and hi's first digit followed by 00..0 up to the rest of hi. A side whose rest is
 * 00..0 (or 99..9) joins the middle, so [100, 399] is written [1-3] [0-9]{2}. */
static void add_digits_between(Text *t, const char *lo, const char *hi, size_t n)
{
    static const char ZEROS[] = "00000000000000000", NINES[] = "99999999999999999";
    size_t same = 0;
    while (same < n && lo[same] == hi[same])
        same++;
    if (same > 0)
        add_literal(t, lo, same);
    if (same == n)
        return;
    if (same > 0)
        text_add(t, " ");
    lo += same, hi += same, n -= same;
    size_t rest = n - 1;
    bool lo_rest_zeros = strncmp(lo + 1, ZEROS, rest) == 0;
    bool hi_rest_nines = strncmp(hi + 1, NINES, rest) == 0;
    char first = lo_rest_zeros ? lo[0] : (char)(lo[0] + 1);
    char last = hi_rest_nines ? hi[0] : (char)(hi[0] - 1);
    int alternatives = !lo_rest_zeros + (first <= last) + !hi_rest_nines;
    const char *sep = "";
    text_add(t, alternatives > 1 ? "(" : "");
    char bound[24];
    if (!lo_rest_zeros) { /* lo up to its first digit and 99..9 */
        bound[0] = lo[0];
        memcpy(bound + 1, NINES, rest);
        add_digits_between(t, lo, bound, n);
        sep = " | ";
    }
    if (first <= last) {
        if (first == last)
            text_add(t, "%s\"%c\"", sep, first);
        else
            text_add(t, "%s[%c-%c]", sep, first, last);
        if (rest == 1)
            text_add(t, " [0-9]");
        else if (rest > 1)
            text_add(t, " [0-9]{%zu}", rest);
        sep = " | ";
    }
    if (!hi_rest_nines) { /* hi's first digit and 00..0 up to hi */
        bound[0] = hi[0];
        memcpy(bound + 1, ZEROS, rest);
        text_add(t, "%s", sep);
        add_digits_between(t, bound, hi, n);
    }
    text_add(t, alternatives > 1 ? ")" : "");
}

static long long power_of_ten(int n)
{
    long long p = 1;
    while (n-- > 0)
        p *= 10;
    return p;
}

/* Writes the numbers from lo to hi (0 <= lo <= hi) without leading zeros: one run of
 * add_digits_between for each count of digits. */
static void add_magnitudes(Text *t, long long lo, long long hi)
{
    char lo_text[24], hi_text[24];
    int lo_digits = snprintf(lo_text, sizeof lo_text, "%lld", lo);
    int hi_digits = snprintf(hi_text, sizeof hi_text, "%lld", hi);
    for (int digits = lo_digits; digits <= hi_digits; digits++) {
        long long from = digits == lo_digits ? lo : power_of_ten(digits - 1);
        long long to = digits == hi_digits ? hi : power_of_ten(digits) - 1;
        char from_text[24], to_text[24];
        snprintf(from_text, sizeof from_text, "%lld", from);
        snprintf(to_text, sizeof to_text, "%lld", to);
        if (digits > lo_digits)
            text_add(t, " | ");
        add_digits_between(t, from_text, to_text, (size_t)digits);
    }
}

/* Writes the integers from lo to hi: "-" and the magnitudes of the negative ones, then the
 * others. -0 is never written. */
static void add_integer_range(Text *t, long long lo, long long hi)
{
    text_add(t, "( ");
    if (lo < 0) {
        text_add(t, "\"-\" ( ");
        add_magnitudes(t, hi < 0 ? -hi : 1, -lo);
        text_add(t, " )");
        if (hi >= 0)
            text_add(t, " | ");
    }
    if (hi >= 0)
        add_magnitudes(t, lo < 0 ? 0 : lo, hi);
    text_add(t, " )");
}

/* ---- reading a schema ----------------------------------------------------------------------- */

/* Keywords that describe without constraining: skipped. */
static const char *const ANNOTATIONS[] = {
    "$schema", "$id", "$comment", "$defs", "definitions", "title", "description", "default",
    "examples", "deprecated", "readOnly", "writeOnly",
};

/* Keywords the converter turns into grammar. */
static const char *const HANDLED[] = {
    "type", "properties", "required", "additionalProperties", "enum", "const", "items",
    "minItems", "maxItems", "minLength", "maxLength", "minimum", "maximum", "exclusiveMinimum",
    "exclusiveMaximum", "pattern", "format", "anyOf", "oneOf", "allOf", "$ref",
};

static bool in_list(const char *word, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(word, list[i]) == 0)
            return true;
    return false;
}

static bool is_annotation(const char *keyword)
{
    return in_list(keyword, ANNOTATIONS, sizeof ANNOTATIONS / sizeof *ANNOTATIONS);
}

/* Every keyword of the schema is handled or an annotation; the first that is neither is
 * the error. */
static int check_keywords(Converter *c, const cJSON *schema)
{
    for (const cJSON *k = schema->child; k; k = k->next)
        if (!is_annotation(k->string) &&
            !in_list(k->string, HANDLED, sizeof HANDLED / sizeof *HANDLED)) {
            fail(c, "keyword '%s' is not supported", k->string);
            return -1;
        }
    return 0;
}

/* When `keyword` is in the schema, every other keyword there is one of `allowed` or an
 * annotation: a keyword that the converter reads alone ($ref, enum, anyOf) is refused
 * beside one that would narrow it further. */
static int check_alone(Converter *c, const cJSON *schema, const char *keyword,
                       const char *const *allowed, size_t n_allowed)
{
    for (const cJSON *k = schema->child; k; k = k->next)
        if (strcmp(k->string, keyword) != 0 && !is_annotation(k->string) &&
            !in_list(k->string, allowed, n_allowed)) {
            fail(c, "'%s' beside '%s' is not supported", k->string, keyword);
            return -1;
        }
    return 0;
}

/* A count keyword (minItems, maxLength, ...): *out is its value, or `missing` when absent. */
static int read_count(Converter *c, const cJSON *schema, const char *keyword, long missing,
                      long *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(schema, keyword);
    *out = missing;
    if (!v)
        return 0;
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble != floor(v->valuedouble)) {
        fail(c, "%s must be a non-negative integer", keyword);
        return -1;
    }
    if (v->valuedouble > MAX_REPEAT) {
        fail(c, "%s above %d is not supported (the grammar writes out each one)", keyword,
             MAX_REPEAT);
        return -1;
    }
    *out = (long)v->valuedouble;
    return 0;
}

/* A pair of bounds where min must not exceed max. */
static int check_order(Converter *c, long min, long max, const char *what)
{
    if (max >= 0 && min > max) {
        fail(c, "min%s %ld is above max%s %ld: nothing can match", what, min, what, max);
        return -1;
    }
    return 0;
}

static const char *visit(Converter *c, const cJSON *schema, const char *name);

/* Visits a schema found under `step` of the one being read ("items", "properties/age"). */
static const char *visit_at(Converter *c, const cJSON *schema, const char *step,
                            const char *step2, const char *name)
{
    size_t before = where_push(c, step);
    if (step2)
        where_push(c, step2);
    const char *rule = visit(c, schema, name);
    where_pop(c, before);
    return rule;
}

/* "name-suffix" in a buffer, for the rules of a schema's parts. */
static const char *child_name(char *buffer, size_t cap, const char *name, const char *suffix)
{
    snprintf(buffer, cap, "%.100s-%.40s", name, suffix); /* rule_start cuts names anyway */
    return buffer;
}

/* ---- $ref ------------------------------------------------------------------------------------ */

/* Follows a JSON pointer ("#/$defs/item") inside the document; NULL when nothing is there. */
static const cJSON *resolve_pointer(const cJSON *document, const char *ref)
{
    const cJSON *at = document;
    const char *p = ref + 1; /* after '#' */
    while (*p == '/' && at) {
        char step[256];
        size_t n = 0;
        for (p++; *p && *p != '/' && n + 1 < sizeof step; p++) {
            if (*p == '~' && (p[1] == '0' || p[1] == '1'))
                step[n++] = *++p == '0' ? '~' : '/';
            else
                step[n++] = *p;
        }
        step[n] = '\0';
        if (cJSON_IsArray(at)) {
            char *end;
            long i = strtol(step, &end, 10);
            at = *step && !*end ? cJSON_GetArrayItem(at, (int)i) : NULL;
        } else {
            at = cJSON_IsObject(at) ? cJSON_GetObjectItemCaseSensitive(at, step) : NULL;
        }
    }
    return *p ? NULL : at;
}

/* A $ref becomes the rule of the schema it points to, made once: the rule's name is taken
 * (and remembered) before its body is written, so a schema that refers to itself, a tree
 * of nodes, becomes a rule that refers to itself. */
static const char *visit_ref(Converter *c, const cJSON *schema)
{
    if (check_alone(c, schema, "$ref", NULL, 0) != 0)
        return NULL;
    const cJSON *ref = cJSON_GetObjectItemCaseSensitive(schema, "$ref");
    if (!cJSON_IsString(ref))
        return fail(c, "$ref must be a string");
    for (size_t i = 0; i < c->n_refs; i++)
        if (strcmp(c->refs[i].ref, ref->valuestring) == 0)
            return c->refs[i].rule;
    if (ref->valuestring[0] != '#')
        return fail(c, "$ref '%.100s' points outside the document: not supported",
                    ref->valuestring);
    const cJSON *target = resolve_pointer(c->document, ref->valuestring);
    if (!target)
        return fail(c, "$ref '%.100s' points to nothing", ref->valuestring);
    const char *last = strrchr(ref->valuestring, '/');
    long index = rule_start(c, last && last[1] ? last + 1 : "root-ref");
    if (index < 0 || buffer_reserve_items(&c->refs, &c->cap_refs, c->n_refs + 1,
                                          sizeof *c->refs, 8, "$refs", c->err) != 0)
        return NULL;
    char *copy = strdup(ref->valuestring);
    if (!copy) {
        error_set(c->err, "out of memory");
        return NULL;
    }
    c->refs[c->n_refs++] = (RefRule){copy, c->rules[index].name};
    /* errors inside it are told where they are in the document */
    char saved[sizeof c->where];
    memcpy(saved, c->where, sizeof saved);
    snprintf(c->where, sizeof c->where, "%s", ref->valuestring + 1);
    const char *rule = visit(c, target, c->rules[index].name);
    memcpy(c->where, saved, sizeof saved);
    if (!rule)
        return NULL;
    Rule *made = &c->rules[c->n_rules - 1];
    if (made->name == rule && c->n_rules - 1 > (size_t)index) {
        /* the target's own rule, made last and named by nobody else yet: its body moves
         * into the $ref's rule, which keeps the short name ("node", not "node-2") */
        c->rules[index].body = made->body;
        free(made->name);
        c->n_rules--;
        return c->rules[index].name;
    }
    Text t = {0};
    text_add(&t, "%s", rule);
    return rule_finish(c, index, &t);
}

/* ---- enum, const ------------------------------------------------------------------------------ */

/* The JSON Schema type names a value has: a whole number is both "integer" and "number". */
static bool value_has_type(const cJSON *v, const char *type)
{
    if (strcmp(type, "number") == 0)
        return cJSON_IsNumber(v);
    if (strcmp(type, "integer") == 0)
        return cJSON_IsNumber(v) && v->valuedouble == floor(v->valuedouble);
    if (strcmp(type, "string") == 0)
        return cJSON_IsString(v);
    if (strcmp(type, "boolean") == 0)
        return cJSON_IsBool(v);
    if (strcmp(type, "null") == 0)
        return cJSON_IsNull(v);
    if (strcmp(type, "array") == 0)
        return cJSON_IsArray(v);
    return strcmp(type, "object") == 0 && cJSON_IsObject(v);
}

/* Whether the value is one of the schema's types (any, when it has no "type"). */
static bool value_fits_type(const cJSON *v, const cJSON *type)
{
    if (!type)
        return true;
    if (cJSON_IsString(type))
        return value_has_type(v, type->valuestring);
    for (const cJSON *t = type->child; t; t = t->next)
        if (cJSON_IsString(t) && value_has_type(v, t->valuestring))
            return true;
    return false;
}

/* enum and const: the values themselves, as cJSON writes them (a "type" beside them keeps
 * only the values of that type). */
static const char *visit_constants(Converter *c, const cJSON *schema, const char *name)
{
    static const char *const TYPE[] = {"type"};
    const cJSON *values = cJSON_GetObjectItemCaseSensitive(schema, "enum");
    const char *keyword = values ? "enum" : "const";
    if (check_alone(c, schema, keyword, TYPE, 1) != 0)
        return NULL;
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(schema, "type");
    if (values && !cJSON_IsArray(values))
        return fail(c, "enum must be an array");
    const cJSON *first = values ? values->child : cJSON_GetObjectItemCaseSensitive(schema, "const");
    Text t = {0};
    int n = 0;
    text_add(&t, "( ");
    for (const cJSON *v = first; v; v = values ? v->next : NULL) {
        if (!value_fits_type(v, type))
            continue;
        text_add(&t, "%s", n++ ? " | " : "");
        if (add_json_literal(c, &t, v) != 0) {
            free(t.data);
            return NULL;
        }
    }
    text_add(&t, " ) space");
    if (n == 0) {
        free(t.data);
        return fail(c, "no value of %s has the schema's type: nothing can match", keyword);
    }
    return primitive(c, "space") ? rule_add(c, name, &t) : NULL;
}

/* ---- anyOf, oneOf -------------------------------------------------------------------------- */

/* Any of the schemas. oneOf is read as anyOf, as llama.cpp does: a text that two of its
 * schemas accept is accepted here but refused by oneOf (docs/grammars.md). */
static const char *visit_alternatives(Converter *c, const cJSON *schema, const char *keyword,
                                      const char *name)
{
    if (check_alone(c, schema, keyword, NULL, 0) != 0)
        return NULL;
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(schema, keyword);
    if (!cJSON_IsArray(list) || !list->child)
        return fail(c, "%s must be a non-empty array", keyword);
    Text t = {0};
    int i = 0;
    for (const cJSON *s = list->child; s; s = s->next, i++) {
        char index[16], child[160];
        snprintf(index, sizeof index, "%d", i);
        const char *rule = visit_at(c, s, keyword, index,
                                    child_name(child, sizeof child, name, index));
        if (!rule) {
            free(t.data);
            return NULL;
        }
        text_add(&t, "%s%s", i ? " | " : "", rule);
    }
    return rule_add(c, name, &t);
}

/* ---- objects --------------------------------------------------------------------------------- */

/* A property of an object: its name, its schema, whether it must be there, and where its
 * schema is (a JSON pointer, for errors). */
typedef struct {
    const char *name;
    const cJSON *schema;
    bool required;
    char where[256];
} Property;

typedef struct {
    Property *items;
    size_t n, cap;
} PropertyList;

static int property_add(Converter *c, PropertyList *list, const cJSON *prop)
{
    for (size_t i = 0; i < list->n; i++)
        if (strcmp(list->items[i].name, prop->string) == 0) {
            fail(c, "property '%.100s' is defined twice: not supported", prop->string);
            return -1;
        }
    if (buffer_reserve_items(&list->items, &list->cap, list->n + 1, sizeof *list->items, 8,
                             "properties", c->err) != 0)
        return -1;
    Property *p = &list->items[list->n++];
    p->name = prop->string;
    p->schema = prop;
    p->required = false;
    size_t before = where_push(c, "properties");
    where_push(c, prop->string);
    snprintf(p->where, sizeof p->where, "%s", c->where);
    where_pop(c, before);
    return 0;
}

/* Adds the schema's properties to the list, and marks its required ones. */
static int properties_read(Converter *c, const cJSON *schema, PropertyList *list)
{
    const cJSON *props = cJSON_GetObjectItemCaseSensitive(schema, "properties");
    if (props && !cJSON_IsObject(props)) {
        fail(c, "properties must be an object");
        return -1;
    }
    for (const cJSON *p = props ? props->child : NULL; p; p = p->next)
        if (property_add(c, list, p) != 0)
            return -1;
    const cJSON *required = cJSON_GetObjectItemCaseSensitive(schema, "required");
    if (required && !cJSON_IsArray(required)) {
        fail(c, "required must be an array of names");
        return -1;
    }
    for (const cJSON *r = required ? required->child : NULL; r; r = r->next) {
        size_t i = 0;
        while (cJSON_IsString(r) && i < list->n && strcmp(list->items[i].name, r->valuestring))
            i++;
        if (!cJSON_IsString(r) || i == list->n) {
            fail(c, "required property '%.100s' is not in properties: not supported",
                 cJSON_IsString(r) ? r->valuestring : "(not a string)");
            return -1;
        }
        list->items[i].required = true;
    }
    return 0;
}

/* Whether a property name can be written without escapes in JSON (no quote, backslash or
 * control character): the only names an extra key written with plain-char can collide with. */
static bool is_plain_name(const char *name)
{
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        if (*p == '"' || *p == '\\' || *p < 0x20)
            return false;
    return true;
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A node of the trie of property names that an extra key must differ from: the names
 * names[first..first+n) (sorted), which share their first `depth` bytes, and the rule
 * (started, not finished) for the rest of a key that has read those bytes. */
typedef struct {
    size_t first, n, depth;
    long rule;
} KeyNode;

typedef struct {
    KeyNode *items;
    size_t n, cap;
} KeyNodeList;

/* Writes a node's rule: the rest of the key, such that the key is none of its names: the
 * closing quote (unless the key so far is one of them), or a character one of them goes on
 * with and then that child's rule, or any other character and then anything. Each child
 * becomes a node of its own, pushed on `todo`, so that a long name makes a chain of rules
 * rather than groups nested as deep as it is long. */
static int key_node_write(Converter *c, const char **names, KeyNode node, KeyNodeList *todo,
                          const char *base)
{
    Text t = {0}, others = {0};
    const char *sep = "";
    size_t i = node.first, end = node.first + node.n;
    if (strlen(names[i]) == node.depth)
        i++; /* the key so far is this name: it must go on */
    else {
        text_add(&t, "\"\\\"\"");
        sep = " | ";
    }
    while (i < end) {
        const unsigned char *at = (const unsigned char *)names[i] + node.depth;
        uint32_t cp;
        int len = utf8_decode(at, strlen((const char *)at), &cp); /* UTF-8: checked */
        size_t j = i;
        while (j < end && strncmp(names[j] + node.depth, (const char *)at, (size_t)len) == 0)
            j++;
        long child = rule_start(c, base);
        if (child < 0 || buffer_reserve_items(&todo->items, &todo->cap, todo->n + 1,
                                              sizeof *todo->items, 16, "key rules", c->err)) {
            free(t.data);
            free(others.data);
            return -1;
        }
        todo->items[todo->n++] = (KeyNode){i, j - i, node.depth + (size_t)len, child};
        text_add(&t, "%s", sep);
        add_literal(&t, (const char *)at, (size_t)len);
        text_add(&t, " %s", c->rules[child].name);
        add_class_char(&others, cp);
        sep = " | ";
        i = j;
    }
    text_add(&t, "%s[^\"\\\\\\x00-\\x1F%s] plain-char* \"\\\"\"", sep, others.data ? others.data : "");
    t.failed |= others.failed;
    free(others.data);
    return rule_finish(c, node.rule, &t) ? 0 : -1;
}

/* The key of an extra property: any string but the object's own property names (which
 * would be read by their own schemas instead), written without escapes. */
static const char *visit_extra_key(Converter *c, const PropertyList *props, const char *name)
{
    const char **names = calloc(props->n + 1, sizeof *names);
    KeyNodeList todo = {0};
    char rest_name[160];
    child_name(rest_name, sizeof rest_name, name, "rest");
    if (!names || !primitive(c, "plain-char") || !primitive(c, "space")) {
        free(names);
        return names ? NULL : fail(c, "out of memory");
    }
    size_t n = 0;
    for (size_t i = 0; i < props->n; i++)
        if (is_plain_name(props->items[i].name))
            names[n++] = props->items[i].name;
    qsort(names, n, sizeof *names, compare_names);
    Text t = {0};
    int status = 0;
    if (n == 0) {
        text_add(&t, "\"\\\"\" plain-char* \"\\\"\" space");
    } else {
        long first = rule_start(c, rest_name);
        text_add(&t, "\"\\\"\" %s space", first >= 0 ? c->rules[first].name : "");
        status = first >= 0 && buffer_reserve_items(&todo.items, &todo.cap, 1,
                                                    sizeof *todo.items, 16, "key rules",
                                                    c->err) == 0
                     ? 0
                     : -1;
        if (status == 0)
            todo.items[todo.n++] = (KeyNode){0, n, 0, first};
        while (status == 0 && todo.n > 0) {
            KeyNode node = todo.items[--todo.n];
            status = key_node_write(c, names, node, &todo, rest_name);
        }
    }
    free(todo.items);
    free(names);
    if (status != 0) {
        free(t.data);
        return NULL;
    }
    return rule_add(c, name, &t);
}

/* The rule of one extra property: its key, then a value of additionalProperties' schema.
 * NULL (with no error) when none are allowed: additionalProperties false, or absent, which
 * llama.cpp reads the same way (a model given the choice invents keys). */
static const char *visit_extra(Converter *c, const cJSON *schema, const PropertyList *props,
                               const char *name, bool *failed)
{
    const cJSON *extra = cJSON_GetObjectItemCaseSensitive(schema, "additionalProperties");
    *failed = false;
    if (!extra || cJSON_IsFalse(extra))
        return NULL;
    char key_name[160], value_name[160];
    const char *value = visit_at(c, extra, "additionalProperties", NULL,
                                 child_name(value_name, sizeof value_name, name, "extra-value"));
    const char *key = value ? visit_extra_key(c, props, child_name(key_name, sizeof key_name,
                                                                   name, "extra-key"))
                            : NULL;
    if (!key) {
        *failed = true;
        return NULL;
    }
    Text t = {0};
    text_add(&t, "%s \":\" space %s", key, value);
    const char *rule = rule_add(c, child_name(key_name, sizeof key_name, name, "extra-kv"), &t);
    *failed = rule == NULL;
    return rule;
}

/* Writes what may follow property `from` once something has been written: each later
 * property after a comma (optional ones in `( )?`), then extra properties if allowed. */
static void add_rest_of_object(Text *t, const PropertyList *props, const char **kv, size_t from,
                               const char *extra)
{
    for (size_t k = from; k < props->n; k++)
        text_add(t, props->items[k].required ? " \",\" space %s" : " ( \",\" space %s )?", kv[k]);
    if (extra)
        text_add(t, " ( \",\" space %s )*", extra);
}

/* An object whose properties come in the schema's order, the required ones always, the
 * optional ones maybe. Commas go between the properties written, so the body is a choice
 * of which property comes first: any optional one before the first required one, or the
 * first required one; after it, each later one with its comma.
 *
 *   a?, b, c?  ->  "{" space ( a-kv "," space b-kv ( "," space c-kv )?
 *                            | b-kv ( "," space c-kv )? ) "}" space */
static const char *build_object(Converter *c, const cJSON *schema, const PropertyList *props,
                                const char *name)
{
    const char **kv = calloc(props->n + 1, sizeof *kv);
    if (!kv) {
        error_set(c->err, "out of memory");
        return NULL;
    }
    bool ok = primitive(c, "space") != NULL;
    for (size_t i = 0; ok && i < props->n; i++) {
        const Property *p = &props->items[i];
        char value_name[160], kv_name[160];
        char saved[sizeof c->where];
        memcpy(saved, c->where, sizeof saved);
        memcpy(c->where, p->where, sizeof c->where);
        const char *value = visit(c, p->schema, child_name(value_name, sizeof value_name,
                                                           name, p->name));
        memcpy(c->where, saved, sizeof saved);
        Text t = {0};
        if (value) {
            add_key_literal(&t, p->name);
            text_add(&t, " space \":\" space %s", value);
        }
        kv[i] = value ? rule_add(c, child_name(kv_name, sizeof kv_name, value_name, "kv"), &t)
                      : NULL;
        ok = kv[i] != NULL;
    }
    bool extra_failed = false;
    const char *extra = ok ? visit_extra(c, schema, props, name, &extra_failed) : NULL;
    ok = ok && !extra_failed;
    Text t = {0};
    text_add(&t, "\"{\" space ");
    size_t first_required = props->n;
    for (size_t i = 0; i < props->n && first_required == props->n; i++)
        if (props->items[i].required)
            first_required = i;
    bool any = props->n > 0 || extra;
    if (any)
        text_add(&t, "( ");
    const char *sep = "";
    for (size_t i = 0; ok && i < props->n && i <= first_required; i++) {
        text_add(&t, "%s%s", sep, kv[i]);
        add_rest_of_object(&t, props, kv, i + 1, extra);
        sep = " | ";
    }
    if (extra && first_required == props->n)
        text_add(&t, "%s%s ( \",\" space %s )*", sep, extra, extra);
    if (any)
        text_add(&t, first_required == props->n ? " )? " : " ) ");
    text_add(&t, "\"}\" space");
    free(kv);
    if (!ok) {
        free(t.data);
        return NULL;
    }
    return rule_add(c, name, &t);
}

static const char *visit_object(Converter *c, const cJSON *schema, const char *name)
{
    const cJSON *extra = cJSON_GetObjectItemCaseSensitive(schema, "additionalProperties");
    bool any_object = !cJSON_GetObjectItemCaseSensitive(schema, "properties") && !extra &&
                      !cJSON_GetObjectItemCaseSensitive(schema, "required");
    if (any_object)
        return primitive(c, "object");
    PropertyList props = {0};
    const char *rule = properties_read(c, schema, &props) == 0
                           ? build_object(c, schema, &props, name)
                           : NULL;
    free(props.items);
    return rule;
}

/* One part of an allOf (at c->where): its properties and required names join the list. A
 * part is an object schema with properties and required only, or a $ref to one. */
static int all_of_part_read(Converter *c, const cJSON *part, PropertyList *props)
{
    static const char *const PART_KEYWORDS[] = {"type", "properties", "required"};
    const cJSON *ref = cJSON_IsObject(part) ? cJSON_GetObjectItemCaseSensitive(part, "$ref")
                                            : NULL;
    if (ref) {
        if (check_alone(c, part, "$ref", NULL, 0) != 0)
            return -1;
        if (!cJSON_IsString(ref) || ref->valuestring[0] != '#' ||
            !(part = resolve_pointer(c->document, ref->valuestring))) {
            fail(c, "$ref in allOf must point to a schema in the document");
            return -1;
        }
        snprintf(c->where, sizeof c->where, "%s", ref->valuestring + 1);
    }
    const cJSON *type = cJSON_IsObject(part) ? cJSON_GetObjectItemCaseSensitive(part, "type")
                                             : NULL;
    if (!cJSON_IsObject(part) || (type && !(cJSON_IsString(type) &&
                                            strcmp(type->valuestring, "object") == 0))) {
        fail(c, "allOf is supported for object schemas only");
        return -1;
    }
    for (const cJSON *k = part->child; k; k = k->next)
        if (!is_annotation(k->string) && !in_list(k->string, PART_KEYWORDS, 3)) {
            fail(c, "'%s' in a part of allOf is not supported", k->string);
            return -1;
        }
    return properties_read(c, part, props);
}

/* allOf of objects: one object with the properties of all of them, in order, and the
 * required ones of each. Extra properties are not allowed in the merged object (as when
 * additionalProperties is absent). */
static const char *visit_all_of(Converter *c, const cJSON *schema, const char *name)
{
    static const char *const TYPE[] = {"type"};
    if (check_alone(c, schema, "allOf", TYPE, 1) != 0)
        return NULL;
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(schema, "type");
    const cJSON *parts = cJSON_GetObjectItemCaseSensitive(schema, "allOf");
    if (type && !(cJSON_IsString(type) && strcmp(type->valuestring, "object") == 0))
        return fail(c, "allOf is supported for objects only");
    if (!cJSON_IsArray(parts) || !parts->child)
        return fail(c, "allOf must be a non-empty array");
    PropertyList props = {0};
    char saved[sizeof c->where];
    memcpy(saved, c->where, sizeof saved);
    int status = 0, i = 0;
    for (const cJSON *part = parts->child; status == 0 && part; part = part->next, i++) {
        char index[16];
        snprintf(index, sizeof index, "%d", i);
        where_push(c, "allOf");
        where_push(c, index);
        status = all_of_part_read(c, part, &props);
        memcpy(c->where, saved, sizeof saved);
    }
    cJSON no_extra = {.type = cJSON_Object};
    const char *rule = status == 0 ? build_object(c, &no_extra, &props, name) : NULL;
    free(props.items);
    return rule;
}

/* ---- arrays ------------------------------------------------------------------------------------ */

/* "[" item ("," item){min-1,max-1} "]", the whole list optional when minItems is 0. */
static const char *visit_array(Converter *c, const cJSON *schema, const char *name)
{
    long min, max;
    if (read_count(c, schema, "minItems", 0, &min) != 0 ||
        read_count(c, schema, "maxItems", -1, &max) != 0 || check_order(c, min, max, "Items"))
        return NULL;
    const cJSON *items = cJSON_GetObjectItemCaseSensitive(schema, "items");
    char item_name[160];
    const char *item = items ? visit_at(c, items, "items", NULL,
                                        child_name(item_name, sizeof item_name, name, "item"))
                             : primitive(c, "value");
    if (!item || !primitive(c, "space"))
        return NULL;
    Text t = {0};
    text_add(&t, "\"[\" space ");
    if (max != 0) {
        text_add(&t, "( %s ( \",\" space %s )", item, item);
        add_repeat(&t, min > 0 ? min - 1 : 0, max > 0 ? max - 1 : -1);
        text_add(&t, min == 0 ? " )? " : " ) ");
    }
    text_add(&t, "\"]\" space");
    return rule_add(c, name, &t);
}

/* ---- strings: lengths, formats, patterns ----------------------------------------------------- */

/* A regular expression read into GBNF. The subset: literal characters, escapes of the
 * special ones (\. \* ...), \d \w \s and \n \t \r, classes [a-z_] and [^...], '.', groups
 * ( ) and (?: ), alternation |, the quantifiers ? * + {m} {m,} {m,n}, and ^ and $ at the
 * very start and end. The text it describes is the string's content as JSON writes it: a
 * quote, a backslash or a control character the pattern asks for is written as its escape;
 * '.' and negated classes stand for characters written as themselves. */
typedef struct {
    Converter *c;
    const char *start, *p, *end;
} Regex;

static int regex_alternatives(Regex *r, Text *out);

static int regex_fail(Regex *r, const char *what)
{
    fail(r->c, "pattern: %s (at offset %d) is not supported", what, (int)(r->p - r->start));
    return -1;
}

typedef struct {
    uint32_t lo, hi;
} CodeRange;

typedef struct {
    CodeRange ranges[64];
    int n;
    bool negated;
} CharClass;

static int class_add(Regex *r, CharClass *k, uint32_t lo, uint32_t hi)
{
    if (k->n == (int)(sizeof k->ranges / sizeof *k->ranges))
        return regex_fail(r, "a class of more than 64 ranges");
    k->ranges[k->n++] = (CodeRange){lo, hi};
    return 0;
}

static bool is_shorthand(const char *p)
{
    return p[0] == '\\' && p[1] && strchr("dws", p[1]);
}

/* \d, \w or \s (at p), into a class. */
static int class_add_shorthand(Regex *r, CharClass *k, char letter)
{
    if (letter == 'd')
        return class_add(r, k, '0', '9');
    if (letter == 'w')
        return class_add(r, k, 'a', 'z') || class_add(r, k, 'A', 'Z') ||
                       class_add(r, k, '0', '9') || class_add(r, k, '_', '_')
                   ? -1
                   : 0;
    return class_add(r, k, ' ', ' ') || class_add(r, k, '\t', '\r') ? -1 : 0;
}

/* One character of the pattern, escapes read: its code point. */
static int regex_char(Regex *r, uint32_t *cp)
{
    static const char SPECIAL[] = ".^$*+?()[]{}|\\/-";
    if (*r->p == '\\') {
        char e = r->p[1];
        if (e && strchr(SPECIAL, e))
            *cp = (uint32_t)e;
        else if (e == 'n' || e == 't' || e == 'r')
            *cp = e == 'n' ? '\n' : e == 't' ? '\t' : '\r';
        else {
            char what[32];
            snprintf(what, sizeof what, "the escape '\\%c'", e ? e : ' ');
            return regex_fail(r, what);
        }
        r->p += 2;
        return 0;
    }
    int len = utf8_decode((const unsigned char *)r->p, (size_t)(r->end - r->p), cp);
    if (len <= 0)
        return regex_fail(r, "text that is not UTF-8");
    r->p += len;
    return 0;
}

/* Writes one range of a GBNF class: "a", or "a-z". */
static void add_class_range(Text *t, uint32_t lo, uint32_t hi)
{
    add_class_char(t, lo);
    if (hi != lo) {
        text_add(t, "-");
        add_class_char(t, hi);
    }
}

/* A class as GBNF: the characters written as themselves in one GBNF class, and each one that
 * JSON escapes as its own literal. A negated class (and '.') leaves those out altogether. */
static void add_class(Text *t, const CharClass *k)
{
    if (k->negated) {
        text_add(t, "[^");
        for (int i = 0; i < k->n; i++)
            add_class_range(t, k->ranges[i].lo, k->ranges[i].hi);
        text_add(t, "\"\\\\\\x00-\\x1F]");
        return;
    }
    /* the characters JSON writes as themselves: all but three pieces */
    static const CodeRange PLAIN[] = {{0x20, 0x21}, {0x23, 0x5B}, {0x5D, 0x10FFFF}};
    Text plain = {0}, escaped = {0};
    const char *sep = "";
    for (int i = 0; i < k->n; i++) {
        uint32_t lo = k->ranges[i].lo, hi = k->ranges[i].hi;
        for (int j = 0; j < 3; j++) {
            uint32_t a = lo > PLAIN[j].lo ? lo : PLAIN[j].lo;
            uint32_t b = hi < PLAIN[j].hi ? hi : PLAIN[j].hi;
            if (a <= b)
                add_class_range(&plain, a, b);
        }
        for (uint32_t cp = lo; cp <= hi && cp < 0x80; cp++)
            if (json_needs_escape(cp)) {
                Text one = {0};
                add_json_char(&one, cp);
                text_add(&escaped, "%s", sep);
                add_literal(&escaped, one.data ? one.data : "", one.len);
                escaped.failed |= one.failed;
                free(one.data);
                sep = " | ";
            }
    }
    bool several = (plain.data && escaped.data) || (escaped.data && strchr(escaped.data, '|'));
    text_add(t, several ? "( " : "");
    if (plain.data)
        text_add(t, "[%s]%s", plain.data, escaped.data ? " | " : "");
    text_add(t, "%s%s", escaped.data ? escaped.data : "", several ? " )" : "");
    t->failed |= plain.failed || escaped.failed;
    free(plain.data);
    free(escaped.data);
}

/* [...] after its '[': ranges a-z, single characters, \d \w \s, escapes. */
static int regex_class(Regex *r, CharClass *k)
{
    k->negated = *r->p == '^';
    r->p += k->negated;
    for (bool first = true; r->p < r->end && (*r->p != ']' || first); first = false) {
        if (is_shorthand(r->p)) {
            if (class_add_shorthand(r, k, r->p[1]) != 0)
                return -1;
            r->p += 2;
            continue;
        }
        uint32_t lo, hi;
        if (regex_char(r, &lo) != 0)
            return -1;
        hi = lo;
        if (*r->p == '-' && r->p + 1 < r->end && r->p[1] != ']') {
            r->p++;
            if (regex_char(r, &hi) != 0)
                return -1;
            if (hi < lo)
                return regex_fail(r, "a range that runs backwards");
        }
        if (class_add(r, k, lo, hi) != 0)
            return -1;
    }
    if (r->p >= r->end)
        return regex_fail(r, "a class without its ']'");
    r->p++;
    return 0;
}

/* One item into `atom`: a group, a class or '.' as GBNF; or one character, as its JSON
 * text only (*plain set), so that a run of them can become one literal. */
static int regex_atom(Regex *r, Text *atom, bool *plain)
{
    char c = *r->p;
    *plain = false;
    if (c == '(') {
        r->p++;
        if (*r->p == '?') {
            if (r->p[1] != ':')
                return regex_fail(r, "a group of the form (?...) other than (?:...)");
            r->p += 2;
        }
        text_add(atom, "( ");
        if (regex_alternatives(r, atom) != 0)
            return -1;
        if (*r->p != ')')
            return regex_fail(r, "a group without its ')'");
        r->p++;
        text_add(atom, " )");
        return 0;
    }
    CharClass k = {0};
    if (c == '[' || c == '.' || is_shorthand(r->p)) {
        int status = 0;
        if (c == '.')
            k.negated = true; /* nothing excluded but what JSON escapes */
        else if (c == '[')
            r->p++, status = regex_class(r, &k);
        else
            status = class_add_shorthand(r, &k, r->p[1]), r->p++;
        if (status != 0)
            return -1;
        r->p += c != '[';
        add_class(atom, &k);
        return 0;
    }
    if (c == '^' || c == '$')
        return regex_fail(r, c == '^' ? "'^' not at the start" : "'$' not at the end");
    if (strchr("*+?{)]}", c))
        return regex_fail(r, "a quantifier or bracket with nothing before it");
    uint32_t cp;
    if (regex_char(r, &cp) != 0)
        return -1;
    add_json_char(atom, cp);
    *plain = true;
    return 0;
}

static bool is_quantifier(char c)
{
    return c == '?' || c == '*' || c == '+' || c == '{';
}

/* The quantifier after an item (at r->p), written as GBNF writes it (the same forms). */
static int regex_quantifier(Regex *r, Text *out)
{
    char c = *r->p;
    if (c != '{') {
        text_add(out, "%c", c);
        r->p++;
    } else {
        char *end;
        long m = strtol(r->p + 1, &end, 10), n = m;
        if (end == r->p + 1 || *r->p == '-')
            return regex_fail(r, "'{' that is not a count");
        if (*end == ',' && end[1] == '}')
            n = -1, end++;
        else if (*end == ',')
            n = strtol(end + 1, &end, 10);
        if (*end != '}')
            return regex_fail(r, "'{' that is not a count");
        if (m < 0 || m > MAX_REPEAT || n > MAX_REPEAT || (n >= 0 && n < m))
            return regex_fail(r, "a count above 10000 or one that runs backwards");
        add_repeat(out, m, n);
        r->p = end + 1;
    }
    if (*r->p == '?' || *r->p == '+')
        return regex_fail(r, "a lazy or possessive quantifier");
    return 0;
}

/* Writes the characters collected so far as one literal, and empties it. */
static void flush_literal(Text *out, Text *literal)
{
    if (literal->len == 0)
        return;
    text_add(out, "%s", out->len && out->data[out->len - 1] != ' ' ? " " : "");
    add_literal(out, literal->data, literal->len);
    out->failed |= literal->failed;
    literal->len = 0;
}

/* A run of items up to '|', ')' or the end (or a '$' there). */
static int regex_sequence(Regex *r, Text *out)
{
    Text literal = {0};
    int status = 0;
    while (status == 0 && r->p < r->end && *r->p != '|' && *r->p != ')' &&
           !(*r->p == '$' && r->p + 1 == r->end)) {
        Text atom = {0};
        bool plain;
        status = regex_atom(r, &atom, &plain);
        if (status == 0 && plain && !is_quantifier(*r->p)) {
            text_add(&literal, "%s", atom.data);
        } else if (status == 0) {
            flush_literal(out, &literal);
            text_add(out, "%s", out->len && out->data[out->len - 1] != ' ' ? " " : "");
            if (plain)
                add_literal(out, atom.data, atom.len);
            else
                text_add(out, "%s", atom.data);
            if (is_quantifier(*r->p))
                status = regex_quantifier(r, out);
        }
        out->failed |= atom.failed;
        free(atom.data);
    }
    flush_literal(out, &literal);
    free(literal.data);
    return status;
}

static int regex_alternatives(Regex *r, Text *out)
{
    if (regex_sequence(r, out) != 0)
        return -1;
    while (*r->p == '|') {
        r->p++;
        text_add(out, " | ");
        if (regex_sequence(r, out) != 0)
            return -1;
    }
    return 0;
}

/* A string whose content matches the pattern somewhere, as JSON Schema's "pattern" says
 * (a search, not a whole match): any characters may come before it unless it starts with
 * '^', and after it unless it ends with '$'. */
static const char *visit_pattern(Converter *c, const char *pattern, const char *name)
{
    Text t = {0};
    Regex r = {c, pattern, pattern, pattern + strlen(pattern)};
    bool anchored_start = *r.p == '^', anchored_end = false;
    r.p += anchored_start;
    text_add(&t, "\"\\\"\" %s( ", anchored_start ? "" : "char* ");
    int status = regex_alternatives(&r, &t);
    if (status == 0 && *r.p == '$' && r.p + 1 == r.end) {
        anchored_end = true;
        r.p++;
    }
    if (status == 0 && r.p < r.end)
        status = regex_fail(&r, "a ')' without its '('");
    text_add(&t, " ) %s\"\\\"\" space", anchored_end ? "" : "char* ");
    bool uses_char = !anchored_start || !anchored_end;
    if (status != 0 || (uses_char && !primitive(c, "char")) || !primitive(c, "space")) {
        free(t.data);
        return NULL;
    }
    return rule_add(c, name, &t);
}

static const char *visit_string(Converter *c, const cJSON *schema, const char *name)
{
    static const char *const FORMATS[] = {"date", "time", "date-time", "uuid"};
    const cJSON *pattern = cJSON_GetObjectItemCaseSensitive(schema, "pattern");
    const cJSON *format = cJSON_GetObjectItemCaseSensitive(schema, "format");
    long min, max;
    if (read_count(c, schema, "minLength", 0, &min) != 0 ||
        read_count(c, schema, "maxLength", -1, &max) != 0 || check_order(c, min, max, "Length"))
        return NULL;
    bool lengths = min > 0 || max >= 0;
    if (lengths + (pattern != NULL) + (format != NULL) > 1)
        return fail(c, "only one of pattern, format and minLength/maxLength is supported in "
                       "a string schema");
    if (pattern && !cJSON_IsString(pattern))
        return fail(c, "pattern must be a string");
    if (pattern)
        return visit_pattern(c, pattern->valuestring, name);
    if (format) {
        if (!cJSON_IsString(format) || !in_list(format->valuestring, FORMATS, 4))
            return fail(c, "format '%.60s' is not supported (date, time, date-time and uuid are)",
                        cJSON_IsString(format) ? format->valuestring : "(not a string)");
        char rule[32];
        snprintf(rule, sizeof rule, "%s-string", format->valuestring);
        return primitive(c, rule);
    }
    if (!lengths)
        return primitive(c, "string");
    if (!primitive(c, "char") || !primitive(c, "space"))
        return NULL;
    Text t = {0};
    text_add(&t, "\"\\\"\" char{%ld,", min);
    if (max >= 0)
        text_add(&t, "%ld", max);
    text_add(&t, "} \"\\\"\" space");
    return rule_add(c, name, &t);
}

/* ---- numbers ---------------------------------------------------------------------------------- */

/* minimum, maximum, exclusiveMinimum, exclusiveMaximum: the integer bounds they give
 * (the open sides at 16 digits). */
static int integer_bounds(Converter *c, const cJSON *schema, long long *lo, long long *hi)
{
    static const char *const KEYWORDS[] = {"minimum", "exclusiveMinimum", "maximum",
                                           "exclusiveMaximum"};
    *lo = -INTEGER_LIMIT;
    *hi = INTEGER_LIMIT;
    for (int i = 0; i < 4; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(schema, KEYWORDS[i]);
        if (!v)
            continue;
        if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble)) {
            fail(c, "%s must be a number", KEYWORDS[i]);
            return -1;
        }
        double x = v->valuedouble;
        double bound = i == 0 ? ceil(x) : i == 1 ? floor(x) + 1 : i == 2 ? floor(x) : ceil(x) - 1;
        if (bound < (double)-INTEGER_LIMIT)
            bound = (double)-INTEGER_LIMIT;
        if (bound > (double)INTEGER_LIMIT)
            bound = (double)INTEGER_LIMIT;
        if (i < 2 && (long long)bound > *lo)
            *lo = (long long)bound;
        if (i >= 2 && (long long)bound < *hi)
            *hi = (long long)bound;
    }
    if (*lo > *hi) {
        fail(c, "no integer lies between the minimum and the maximum");
        return -1;
    }
    return 0;
}

/* The first of minimum, maximum, exclusiveMinimum and exclusiveMaximum in the schema, or
 * NULL. */
static const char *bound_keyword(const cJSON *schema)
{
    static const char *const BOUNDS[] = {"minimum", "maximum", "exclusiveMinimum",
                                         "exclusiveMaximum"};
    for (int i = 0; i < 4; i++)
        if (cJSON_GetObjectItemCaseSensitive(schema, BOUNDS[i]))
            return BOUNDS[i];
    return NULL;
}

static const char *visit_integer(Converter *c, const cJSON *schema, const char *name)
{
    if (!bound_keyword(schema))
        return primitive(c, "integer");
    long long lo, hi;
    if (integer_bounds(c, schema, &lo, &hi) != 0 || !primitive(c, "space"))
        return NULL;
    Text t = {0};
    add_integer_range(&t, lo, hi);
    text_add(&t, " space");
    return rule_add(c, name, &t);
}

/* ---- types ------------------------------------------------------------------------------------- */

static const char *visit_type(Converter *c, const cJSON *schema, const char *type,
                              const char *name)
{
    if (strcmp(type, "string") == 0)
        return visit_string(c, schema, name);
    if (strcmp(type, "integer") == 0)
        return visit_integer(c, schema, name);
    if (strcmp(type, "number") == 0 && bound_keyword(schema))
        return fail(c, "%s is supported for type integer only, not number", bound_keyword(schema));
    if (strcmp(type, "object") == 0)
        return visit_object(c, schema, name);
    if (strcmp(type, "array") == 0)
        return visit_array(c, schema, name);
    if (strcmp(type, "number") == 0 || strcmp(type, "boolean") == 0 || strcmp(type, "null") == 0)
        return primitive(c, type);
    return fail(c, "type '%.60s' is not a JSON Schema type", type);
}

/* The type a schema without "type" has from its keywords (properties: an object, ...), or
 * NULL when it has none of them: then any value matches. */
static const char *implied_type(const cJSON *schema)
{
    static const struct {
        const char *keyword, *type;
    } IMPLY[] = {
        {"properties", "object"}, {"additionalProperties", "object"}, {"required", "object"},
        {"items", "array"},       {"minItems", "array"},              {"maxItems", "array"},
        {"minLength", "string"},  {"maxLength", "string"},            {"pattern", "string"},
        {"format", "string"},     {"minimum", "number"},              {"maximum", "number"},
        {"exclusiveMinimum", "number"}, {"exclusiveMaximum", "number"},
    };
    for (size_t i = 0; i < sizeof IMPLY / sizeof *IMPLY; i++)
        if (cJSON_GetObjectItemCaseSensitive(schema, IMPLY[i].keyword))
            return IMPLY[i].type;
    return NULL;
}

/* "type": ["string", "null"]: one rule per type, and a rule that is any of them. */
static const char *visit_types(Converter *c, const cJSON *schema, const cJSON *types,
                               const char *name)
{
    if (!types->child)
        return fail(c, "type must not be an empty list");
    Text t = {0};
    for (const cJSON *type = types->child; type; type = type->next) {
        if (!cJSON_IsString(type)) {
            free(t.data);
            return fail(c, "type must be a string or a list of strings");
        }
        char child[160];
        const char *rule = visit_type(c, schema, type->valuestring,
                                      child_name(child, sizeof child, name, type->valuestring));
        if (!rule) {
            free(t.data);
            return NULL;
        }
        text_add(&t, "%s%s", type == types->child ? "" : " | ", rule);
    }
    return rule_add(c, name, &t);
}

/* One schema: the name of the rule that matches what it describes. */
static const char *visit(Converter *c, const cJSON *schema, const char *name)
{
    if (cJSON_IsTrue(schema))
        return primitive(c, "value");
    if (cJSON_IsFalse(schema))
        return fail(c, "the schema false matches nothing");
    if (!cJSON_IsObject(schema))
        return fail(c, "a schema must be an object or a boolean");
    if (check_keywords(c, schema) != 0)
        return NULL;
    if (cJSON_GetObjectItemCaseSensitive(schema, "$ref"))
        return visit_ref(c, schema);
    if (cJSON_GetObjectItemCaseSensitive(schema, "enum") ||
        cJSON_GetObjectItemCaseSensitive(schema, "const"))
        return visit_constants(c, schema, name);
    if (cJSON_GetObjectItemCaseSensitive(schema, "anyOf"))
        return visit_alternatives(c, schema, "anyOf", name);
    if (cJSON_GetObjectItemCaseSensitive(schema, "oneOf"))
        return visit_alternatives(c, schema, "oneOf", name);
    if (cJSON_GetObjectItemCaseSensitive(schema, "allOf"))
        return visit_all_of(c, schema, name);
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(schema, "type");
    if (cJSON_IsArray(type))
        return visit_types(c, schema, type, name);
    if (type && !cJSON_IsString(type))
        return fail(c, "type must be a string or a list of strings");
    const char *implied = type ? type->valuestring : implied_type(schema);
    return implied ? visit_type(c, schema, implied, name) : primitive(c, "value");
}

/* ---- the whole document ------------------------------------------------------------------------ */

static void converter_free(Converter *c)
{
    for (size_t i = 0; i < c->n_rules; i++) {
        free(c->rules[i].name);
        free(c->rules[i].body);
    }
    free(c->rules);
    for (size_t i = 0; i < c->n_refs; i++)
        free(c->refs[i].ref);
    free(c->refs);
}

/* root first, then the rules in the order they were finished */
static int write_rules(Converter *c, const char *root, char **gbnf)
{
    Text t = {0};
    if (strcmp(root, "root") != 0)
        text_add(&t, "root ::= %s\n", root);
    for (size_t i = 0; i < c->n_rules; i++)
        if (strcmp(c->rules[i].name, "root") == 0)
            text_add(&t, "root ::= %s\n", c->rules[i].body);
    for (size_t i = 0; i < c->n_rules; i++)
        if (strcmp(c->rules[i].name, "root") != 0)
            text_add(&t, "%s ::= %s\n", c->rules[i].name, c->rules[i].body);
    if (t.failed) {
        free(t.data);
        return error_set(c->err, "out of memory for a grammar");
    }
    *gbnf = t.data;
    return 0;
}

/* The offset of the first byte that does not start a well-formed UTF-8 character, or len. */
static size_t first_bad_utf8(const char *text, size_t len)
{
    size_t at = 0;
    while (at < len) {
        uint32_t cp;
        int n = utf8_decode((const unsigned char *)text + at, len - at, &cp);
        if (n <= 0)
            return at;
        at += (size_t)n;
    }
    return len;
}

int json_schema_to_gbnf(const char *schema, size_t len, char **gbnf, Error *err)
{
    size_t bad = first_bad_utf8(schema, len);
    if (bad < len)
        return error_set(err, "the schema is not UTF-8 (byte %zu)", bad);
    cJSON *document = cJSON_ParseWithLength(schema, len);
    if (!document) {
        const char *at = cJSON_GetErrorPtr();
        long offset = at && at >= schema && at <= schema + len ? (long)(at - schema) : 0;
        return error_set(err, "the schema is not valid JSON (near byte %ld)", offset);
    }
    Converter c = {.document = document, .err = err};
    const char *root = visit(&c, document, "root");
    int status = root ? write_rules(&c, root, gbnf) : -1;
    converter_free(&c);
    cJSON_Delete(document);
    return status;
}

int json_schema_grammar(const char *schema, size_t len, Grammar *g, Error *err)
{
    char *gbnf;
    if (json_schema_to_gbnf(schema, len, &gbnf, err) != 0)
        return -1;
    int status = grammar_parse(gbnf, strlen(gbnf), g, err);
    free(gbnf);
    return status;
}

/* GBNF: the parser (text -> rule table, then the checks for undefined and left-recursive
 * rules) and the recognizer (a set of parse stacks advanced one code point at a time).
 * grammar.h shows the rule table's shape; docs/grammars.md walks through both halves. */
#include "grammar.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buffer.h"
#include "utf8.h"

/* The most copies a repetition {m,n} may ask for: each copy is written out in the table,
 * so a bound keeps a typo such as {1000000} from filling memory. */
enum { GRAMMAR_MAX_REPEAT = 10000, GRAMMAR_MAX_GROUP_DEPTH = 200 };

/* ---------------------------------------------------------------- the parser */

/* One rule while it is built: its elements, and what the checks need to name it. */
typedef struct {
    GrammarElement *items;
    size_t n, cap;
    char *name;
    bool defined;
    size_t first_use;  /* where the text first names it (its offset), for "never defined" */
    size_t definition; /* where its definition starts, for "defined twice" */
} RuleDraft;

typedef struct {
    const char *text;
    size_t len, pos;
    RuleDraft *rules;
    size_t n_rules, cap_rules;
    int group_depth; /* parentheses open around the parser's position */
    Error *err;
} Parser;

static int peek(const Parser *p, size_t ahead)
{
    return p->pos + ahead < p->len ? (unsigned char)p->text[p->pos + ahead] : -1;
}

/* "line L, column C" of a byte offset, both counted from 1; columns count characters. */
static int error_at(const Parser *p, size_t offset, const char *what)
{
    int line = 1, column = 1;
    for (size_t i = 0; i < offset && i < p->len; i++) {
        unsigned char c = (unsigned char)p->text[i];
        if (c == '\n') {
            line++;
            column = 1;
        } else if ((c & 0xC0) != 0x80) {
            column++;
        }
    }
    return error_set(p->err, "line %d, column %d: %s", line, column, what);
}

static int fail(const Parser *p, const char *what)
{
    return error_at(p, p->pos, what);
}

static bool is_name_char(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-';
}

/* Skips spaces, tabs and comments (# to the end of the line), and line ends too where the
 * format allows them: after "::=" and "|", and anywhere inside parentheses. Elsewhere a line
 * end ends the rule. */
static void skip_space(Parser *p, bool newline_ok)
{
    for (int c = peek(p, 0); c >= 0; c = peek(p, 0)) {
        if (c == '#') {
            while (peek(p, 0) >= 0 && peek(p, 0) != '\n' && peek(p, 0) != '\r')
                p->pos++;
        } else if (c == ' ' || c == '\t' || (newline_ok && (c == '\n' || c == '\r'))) {
            p->pos++;
        } else {
            return;
        }
    }
}

static int rule_push(Parser *p, int rule, GrammarElementType type, uint32_t value)
{
    RuleDraft *r = &p->rules[rule];
    if (buffer_reserve_items(&r->items, &r->cap, r->n + 1, sizeof *r->items, 16,
                             "grammar elements", p->err) != 0)
        return -1;
    r->items[r->n++] = (GrammarElement){type, value};
    return 0;
}

/* A new rule named `name` (len bytes): its id, or -1. */
static int rule_add(Parser *p, const char *name, size_t len)
{
    if (buffer_reserve_items(&p->rules, &p->cap_rules, p->n_rules + 1, sizeof *p->rules, 16,
                             "grammar rules", p->err) != 0)
        return -1;
    char *copy = strndup(name, len);
    if (!copy)
        return error_set(p->err, "out of memory for a grammar rule's name");
    p->rules[p->n_rules] = (RuleDraft){.name = copy, .first_use = p->pos};
    return (int)p->n_rules++;
}

/* The id of the rule called name, added (not yet defined) when the text names it first. */
static int rule_id(Parser *p, const char *name, size_t len)
{
    for (size_t i = 0; i < p->n_rules; i++)
        if (strlen(p->rules[i].name) == len && memcmp(p->rules[i].name, name, len) == 0)
            return (int)i;
    return rule_add(p, name, len);
}

/* A rule of the parser's own, for a group or a repetition inside rule `parent`. */
static int rule_generated(Parser *p, int parent)
{
    char name[160];
    snprintf(name, sizeof name, "%.120s(%zu)", p->rules[parent].name, p->n_rules);
    int id = rule_add(p, name, strlen(name));
    if (id >= 0)
        p->rules[id].defined = true;
    return id;
}

static int parse_hex_digits(Parser *p, int digits, uint32_t *out)
{
    uint32_t value = 0;
    for (int i = 0; i < digits; i++) {
        int c = peek(p, 0), v;
        if (c >= '0' && c <= '9')
            v = c - '0';
        else if (c >= 'a' && c <= 'f')
            v = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            v = c - 'A' + 10;
        else
            return fail(p, digits == 2 ? "expecting 2 hex digits after \\x"
                                       : digits == 4 ? "expecting 4 hex digits after \\u"
                                                     : "expecting 8 hex digits after \\U");
        value = value << 4 | (uint32_t)v;
        p->pos++;
    }
    *out = value;
    return 0;
}

/* One character of a literal or a class: an escape (\n \t \r \\ \" \[ \] \xHH \uHHHH
 * \UHHHHHHHH) or a UTF-8 character, as its code point. */
static int parse_char(Parser *p, uint32_t *code_point)
{
    if (peek(p, 0) < 0)
        return fail(p, "unexpected end of the grammar");
    if (peek(p, 0) != '\\') {
        int n = utf8_decode((const unsigned char *)p->text + p->pos, p->len - p->pos, code_point);
        if (n < 0)
            return fail(p, "invalid UTF-8");
        p->pos += (size_t)n;
        return 0;
    }
    int c = peek(p, 1);
    p->pos += 2;
    switch (c) {
    case 'x': return parse_hex_digits(p, 2, code_point);
    case 'u': return parse_hex_digits(p, 4, code_point);
    case 'U': return parse_hex_digits(p, 8, code_point);
    case 'n': *code_point = '\n'; return 0;
    case 't': *code_point = '\t'; return 0;
    case 'r': *code_point = '\r'; return 0;
    case '\\': case '"': case '[': case ']': *code_point = (uint32_t)c; return 0;
    default:
        p->pos -= 2; /* point at the backslash */
        return fail(p, c < 0 ? "unexpected end of the grammar" : "unknown escape");
    }
}

/* "abc": one single-character class per character. */
static int parse_literal(Parser *p, int rule)
{
    p->pos++;
    while (peek(p, 0) != '"') {
        uint32_t cp;
        if (parse_char(p, &cp) != 0 || rule_push(p, rule, GRAMMAR_CHAR, cp) != 0)
            return -1;
    }
    p->pos++;
    return 0;
}

/* [a-z_] or [^"\\]: its first character as CHAR or CHAR_NOT, the others as CHAR_ALT, each
 * range's upper end as CHAR_UPPER after its lower one. */
static int parse_class(Parser *p, int rule)
{
    size_t start = p->pos;
    p->pos++;
    GrammarElementType first = GRAMMAR_CHAR;
    if (peek(p, 0) == '^') {
        first = GRAMMAR_CHAR_NOT;
        p->pos++;
    }
    size_t class_start = p->rules[rule].n;
    while (peek(p, 0) != ']') {
        uint32_t low;
        if (parse_char(p, &low) != 0)
            return -1;
        GrammarElementType type = p->rules[rule].n == class_start ? first : GRAMMAR_CHAR_ALT;
        if (rule_push(p, rule, type, low) != 0)
            return -1;
        if (peek(p, 0) == '-' && peek(p, 1) != ']') {
            uint32_t high;
            p->pos++;
            if (parse_char(p, &high) != 0)
                return -1;
            if (high < low)
                return error_at(p, start, "a range in this class ends below where it starts");
            if (rule_push(p, rule, GRAMMAR_CHAR_UPPER, high) != 0)
                return -1;
        }
    }
    p->pos++;
    if (p->rules[rule].n == class_start)
        return error_at(p, start, "an empty character class matches nothing");
    return 0;
}

static int parse_count(Parser *p, long *out)
{
    if (peek(p, 0) < '0' || peek(p, 0) > '9')
        return fail(p, "expecting a number");
    size_t start = p->pos;
    long n = 0;
    while (peek(p, 0) >= '0' && peek(p, 0) <= '9') {
        n = n * 10 + (peek(p, 0) - '0');
        if (n > GRAMMAR_MAX_REPEAT)
            return error_at(p, start, "repetition count above 10000");
        p->pos++;
    }
    *out = n;
    return 0;
}

/* {m}, {m,} or {m,n} after the '{': min and max (-1 for no upper bound). */
static int parse_braces(Parser *p, bool nested, long *min, long *max)
{
    size_t start = p->pos - 1;
    skip_space(p, nested);
    if (parse_count(p, min) != 0)
        return -1;
    skip_space(p, nested);
    *max = *min;
    if (peek(p, 0) == ',') {
        p->pos++;
        skip_space(p, nested);
        *max = -1;
        if (peek(p, 0) >= '0' && peek(p, 0) <= '9' && parse_count(p, max) != 0)
            return -1;
        skip_space(p, nested);
    }
    if (peek(p, 0) != '}')
        return fail(p, "expecting '}' (or ',') in a repetition {m,n}");
    p->pos++;
    if (*max >= 0 && *max < *min)
        return error_at(p, start, "repetition {m,n} with n below m");
    return 0;
}

/* Appends elements[from..to) of rule `src` to rule `dst`. */
static int rule_copy_run(Parser *p, int dst, int src, size_t from, size_t to)
{
    for (size_t i = from; i < to; i++)
        if (rule_push(p, dst, p->rules[src].items[i].type, p->rules[src].items[i].value) != 0)
            return -1;
    return 0;
}

/* Rewrites the item S that ends rule `rule` (its elements from `item` on) as S{min,max}:
 *   S{m,n}  ->  S ... S (m times) O1      O1 ::= S O2 |   ...   O(n-m) ::= S |
 *   S{m,}   ->  S ... S (m times) R       R  ::= S R |
 * so that *, + and ? are {0,}, {1,} and {0,1}. The optional tail is a chain of rules that
 * each take one S or nothing, rather than n-m alternatives, so that the table grows with n
 * and not with n squared. */
static int apply_repetition(Parser *p, int rule, size_t item, long min, long max)
{
    size_t item_end = p->rules[rule].n;
    int tail = -1;
    long n_optional = max < 0 ? 1 : max - min;
    /* the chain is built from its end: O(n-m) first, each next one referring to the last */
    for (long i = 0; i < n_optional; i++) {
        int opt = rule_generated(p, rule);
        if (opt < 0 || rule_copy_run(p, opt, rule, item, item_end) != 0)
            return -1;
        int next = max < 0 ? opt : tail;
        if ((next >= 0 && rule_push(p, opt, GRAMMAR_RULE_REF, (uint32_t)next) != 0) ||
            rule_push(p, opt, GRAMMAR_ALT, 0) != 0 || rule_push(p, opt, GRAMMAR_END, 0) != 0)
            return -1;
        tail = opt;
    }
    if (min == 0)
        p->rules[rule].n = item;
    for (long i = 1; i < min; i++)
        if (rule_copy_run(p, rule, rule, item, item_end) != 0)
            return -1;
    return tail >= 0 ? rule_push(p, rule, GRAMMAR_RULE_REF, (uint32_t)tail) : 0;
}

static int parse_alternatives(Parser *p, int rule, int named_rule, bool nested);

/* ( alternatives ): a rule of its own, referred to from here. Groups are parsed by
 * recursion, so their depth is bounded, as a stack's must be. */
static int parse_group(Parser *p, int rule, int named_rule)
{
    if (p->group_depth == GRAMMAR_MAX_GROUP_DEPTH)
        return fail(p, "groups nested more than 200 deep");
    p->pos++;
    skip_space(p, true);
    int group = rule_generated(p, named_rule);
    p->group_depth++;
    if (group < 0 || parse_alternatives(p, group, named_rule, true) != 0)
        return -1;
    p->group_depth--;
    if (peek(p, 0) != ')')
        return fail(p, "expecting ')'");
    p->pos++;
    return rule_push(p, rule, GRAMMAR_RULE_REF, (uint32_t)group);
}

static int parse_reference(Parser *p, int rule)
{
    size_t start = p->pos;
    while (is_name_char(peek(p, 0)))
        p->pos++;
    size_t end = p->pos;
    p->pos = start; /* a rule first named here is "used" here */
    int id = rule_id(p, p->text + start, end - start);
    p->pos = end;
    return id < 0 ? -1 : rule_push(p, rule, GRAMMAR_RULE_REF, (uint32_t)id);
}

/* One item of a sequence (literal, class, '.', reference or group) into rule `rule`:
 * returns 1 when there was one, 0 at the end of the sequence, -1 on error. */
static int parse_item(Parser *p, int rule, int named_rule)
{
    int c = peek(p, 0);
    int status;
    if (c == '"')
        status = parse_literal(p, rule);
    else if (c == '[')
        status = parse_class(p, rule);
    else if (c == '.') {
        p->pos++;
        status = rule_push(p, rule, GRAMMAR_CHAR_ANY, 0);
    } else if (c == '(')
        status = parse_group(p, rule, named_rule);
    else if (is_name_char(c))
        status = parse_reference(p, rule);
    else
        return 0;
    return status == 0 ? 1 : -1;
}

/* A repetition operator after an item: sets min and max and returns 1, or 0 when there is
 * none here. */
static int parse_repetition(Parser *p, bool nested, long *min, long *max)
{
    switch (peek(p, 0)) {
    case '*': *min = 0; *max = -1; break;
    case '+': *min = 1; *max = -1; break;
    case '?': *min = 0; *max = 1; break;
    case '{': p->pos++; return parse_braces(p, nested, min, max) == 0 ? 1 : -1;
    default: return 0;
    }
    p->pos++;
    return 1;
}

/* Items, each perhaps repeated, up to a '|', a ')' or the end of the line (of the group). */
static int parse_sequence(Parser *p, int rule, int named_rule, bool nested)
{
    size_t item = p->rules[rule].n;
    bool have_item = false;
    for (;;) {
        long min, max;
        size_t operator_at = p->pos;
        int rep = parse_repetition(p, nested, &min, &max);
        if (rep < 0)
            return -1;
        if (rep > 0) {
            if (!have_item)
                return error_at(p, operator_at, "a repetition (* + ? {}) needs an item before it");
            if (apply_repetition(p, rule, item, min, max) != 0)
                return -1;
            have_item = false; /* a second operator needs a group: (S{2,3})? */
            skip_space(p, nested);
            continue;
        }
        size_t start = p->rules[rule].n;
        int got = parse_item(p, rule, named_rule);
        if (got <= 0)
            return got;
        item = start;
        have_item = true;
        skip_space(p, nested);
    }
}

static int parse_alternatives(Parser *p, int rule, int named_rule, bool nested)
{
    if (parse_sequence(p, rule, named_rule, nested) != 0)
        return -1;
    while (peek(p, 0) == '|') {
        p->pos++;
        skip_space(p, true);
        if (rule_push(p, rule, GRAMMAR_ALT, 0) != 0 ||
            parse_sequence(p, rule, named_rule, nested) != 0)
            return -1;
    }
    return rule_push(p, rule, GRAMMAR_END, 0);
}

/* name ::= alternatives, up to the end of its line. */
static int parse_rule(Parser *p)
{
    size_t start = p->pos;
    while (is_name_char(peek(p, 0)))
        p->pos++;
    if (p->pos == start)
        return fail(p, "expecting a rule name");
    size_t name_end = p->pos;
    p->pos = start;
    int id = rule_id(p, p->text + start, name_end - start);
    p->pos = name_end;
    if (id < 0)
        return -1;
    if (p->rules[id].defined) {
        char what[200];
        snprintf(what, sizeof what, "rule '%.120s' is defined twice", p->rules[id].name);
        return error_at(p, start, what);
    }
    p->rules[id].defined = true;
    p->rules[id].definition = start;
    skip_space(p, false);
    if (p->pos + 3 > p->len || memcmp(p->text + p->pos, "::=", 3) != 0)
        return fail(p, "expecting ::=");
    p->pos += 3;
    skip_space(p, true);
    if (parse_alternatives(p, id, id, false) != 0)
        return -1;
    if (peek(p, 0) == '\r')
        p->pos++;
    if (peek(p, 0) == '\n')
        p->pos++;
    else if (peek(p, 0) >= 0)
        return fail(p, peek(p, 0) == ')' ? "unexpected ')'" : "expecting the end of the line");
    skip_space(p, true);
    return 0;
}

/* ---------------------------------------------------------------- the checks */

static bool ends_alternative(GrammarElementType t)
{
    return t == GRAMMAR_END || t == GRAMMAR_ALT;
}

/* The index of the ALT or END that ends the alternative elements[i] is in. */
static size_t alternative_end(const GrammarElement *e, size_t i)
{
    while (!ends_alternative(e[i].type))
        i++;
    return i;
}

/* Skips one character class starting at elements[i]: the index just past it. */
static size_t class_end(const GrammarElement *e, size_t i)
{
    for (i++; e[i].type == GRAMMAR_CHAR_ALT || e[i].type == GRAMMAR_CHAR_UPPER; i++)
        ;
    return i;
}

/* nullable[r]: rule r can match the empty text. Found by repeating until nothing changes:
 * an alternative is nullable when every item in it is a reference to a nullable rule. */
static void find_nullable(const Grammar *g, bool *nullable)
{
    for (bool changed = true; changed;) {
        changed = false;
        for (int r = 0; r < g->n_rules; r++) {
            if (nullable[r])
                continue;
            for (size_t i = g->rule_start[r];; i++) {
                const GrammarElement *e = &g->elements[i];
                if (ends_alternative(e->type)) {
                    nullable[r] = changed = true;
                    break;
                }
                if (e->type == GRAMMAR_RULE_REF && nullable[e->value])
                    continue;
                /* this alternative needs a character: try the next one */
                i = alternative_end(g->elements, i);
                if (g->elements[i].type == GRAMMAR_END)
                    break;
            }
        }
    }
}

/* Depth-first over "rule a can start with rule b" (b referred to before any character, past
 * nullable rules only): true when it comes back to `target`, which then would call itself
 * without reading a character. state: 0 unseen, 1 seen. */
static bool reaches_left(const Grammar *g, const bool *nullable, int rule, int target,
                         unsigned char *seen)
{
    seen[rule] = 1;
    for (size_t i = g->rule_start[rule];; i++) {
        const GrammarElement *e = &g->elements[i];
        if (e->type == GRAMMAR_END)
            return false;
        if (e->type != GRAMMAR_RULE_REF) /* a character or an ALT: this alternative is done */
            goto next_alternative;
        if ((int)e->value == target ||
            (!seen[e->value] && reaches_left(g, nullable, (int)e->value, target, seen)))
            return true;
        if (nullable[e->value])
            continue;
    next_alternative:
        i = alternative_end(g->elements, i);
        if (g->elements[i].type == GRAMMAR_END)
            return false;
    }
}

static int check_left_recursion(const Grammar *g, Error *err)
{
    bool *nullable = calloc((size_t)g->n_rules, sizeof *nullable);
    unsigned char *seen = calloc((size_t)g->n_rules, 1);
    if (!nullable || !seen) {
        free(nullable);
        free(seen);
        return error_set(err, "out of memory checking the grammar");
    }
    find_nullable(g, nullable);
    int status = 0;
    for (int r = 0; r < g->n_rules && status == 0; r++) {
        memset(seen, 0, (size_t)g->n_rules);
        if (reaches_left(g, nullable, r, r, seen))
            status = error_set(err, "rule '%s' is left-recursive: it can come back to itself "
                                    "before reading a character", g->rule_names[r]);
    }
    free(nullable);
    free(seen);
    return status;
}

static int check_defined(const Parser *p)
{
    for (size_t r = 0; r < p->n_rules; r++) {
        if (p->rules[r].defined)
            continue;
        char what[200];
        snprintf(what, sizeof what, "rule '%.120s' is used but never defined", p->rules[r].name);
        return error_at(p, p->rules[r].first_use, what);
    }
    return 0;
}

/* Moves the drafts into g: one array of elements, each rule's start, its name. */
static int grammar_assemble(Parser *p, Grammar *g)
{
    size_t total = 0;
    for (size_t r = 0; r < p->n_rules; r++)
        total += p->rules[r].n;
    g->elements = malloc(total * sizeof *g->elements);
    g->rule_start = malloc(p->n_rules * sizeof *g->rule_start);
    g->rule_names = calloc(p->n_rules, sizeof *g->rule_names);
    if (!g->elements || !g->rule_start || !g->rule_names)
        return error_set(p->err, "out of memory for a grammar of %zu elements", total);
    g->n_rules = (int)p->n_rules;
    g->root = -1;
    for (size_t r = 0; r < p->n_rules; r++) {
        g->rule_start[r] = g->n_elements;
        memcpy(g->elements + g->n_elements, p->rules[r].items, p->rules[r].n * sizeof *g->elements);
        g->n_elements += p->rules[r].n;
        g->rule_names[r] = p->rules[r].name;
        p->rules[r].name = NULL; /* g owns it now */
        if (strcmp(g->rule_names[r], "root") == 0)
            g->root = (int)r;
    }
    return g->root >= 0 ? 0 : error_set(p->err, "the grammar has no rule named 'root'");
}

static void parser_free(Parser *p)
{
    for (size_t r = 0; r < p->n_rules; r++) {
        free(p->rules[r].items);
        free(p->rules[r].name);
    }
    free(p->rules);
}

int grammar_parse(const char *text, size_t len, Grammar *g, Error *err)
{
    *g = (Grammar){0};
    Parser p = {.text = text, .len = len, .err = err};
    skip_space(&p, true);
    int status = 0;
    while (status == 0 && p.pos < p.len)
        status = parse_rule(&p);
    if (status == 0)
        status = check_defined(&p);
    if (status == 0)
        status = grammar_assemble(&p, g);
    if (status == 0)
        status = check_left_recursion(g, err);
    parser_free(&p);
    if (status != 0)
        grammar_free(g);
    return status;
}

void grammar_free(Grammar *g)
{
    for (int r = 0; r < g->n_rules; r++)
        free(g->rule_names[r]);
    free(g->rule_names);
    free(g->rule_start);
    free(g->elements);
    *g = (Grammar){0};
}

/* ---------------------------------------------------------------- the recognizer */

static void stack_set_free(GrammarStackSet *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->items[i].positions);
    free(s->items);
    *s = (GrammarStackSet){0};
}

static bool stack_equal(const GrammarStack *a, const int *positions, int depth)
{
    return a->depth == depth &&
           memcmp(a->positions, positions, (size_t)depth * sizeof *positions) == 0;
}

/* Adds a copy of positions[0..depth) to the set unless the set holds it already: two ways
 * through the grammar that reach the same stack continue the same way, and keeping one
 * keeps the set from doubling at each ambiguous step. Some grammars still multiply their
 * ways with every character (an ambiguous recursion inside a repetition, such as
 * (. root "x" | .)+): past GRAMMAR_MAX_STACKS the text is refused with an error, rather than
 * a recognizer whose every step costs more than the last. */
static int stack_set_add(GrammarStackSet *s, const int *positions, int depth, Error *err)
{
    for (size_t i = 0; i < s->n; i++)
        if (stack_equal(&s->items[i], positions, depth))
            return 0;
    if (s->n == GRAMMAR_MAX_STACKS)
        return error_set(err, "the grammar is too ambiguous here: more than %d ways to read "
                              "the text so far", GRAMMAR_MAX_STACKS);
    if (buffer_reserve_items(&s->items, &s->cap, s->n + 1, sizeof *s->items, 8,
                             "grammar parse stacks", err) != 0)
        return -1;
    int *copy = malloc((size_t)(depth > 0 ? depth : 1) * sizeof *copy);
    if (!copy)
        return error_set(err, "out of memory for a grammar parse stack");
    memcpy(copy, positions, (size_t)depth * sizeof *copy);
    s->items[s->n++] = (GrammarStack){copy, depth};
    return 0;
}

/* Scratch room for a stack of n positions while it is built: `local` (STACK_LOCAL entries
 * on the caller's stack) when it is large enough, as it is for all but deeply nested
 * grammars, otherwise malloc'd; NULL with err set when memory runs out. The recognizer
 * builds stacks at every character of every token it tries, so a malloc each time would
 * cost more than the work. */
enum { STACK_LOCAL = 32 };

static int *stack_room(int *local, int n, Error *err)
{
    if (n <= STACK_LOCAL)
        return local;
    int *room = malloc((size_t)n * sizeof *room);
    if (!room)
        error_set(err, "out of memory for a grammar parse stack");
    return room;
}

static void stack_room_release(int *room, const int *local)
{
    if (room != local)
        free(room);
}

static int expand(const Grammar *g, const int *positions, int depth, GrammarStackSet *out,
                  Error *err);

/* Expands, for each alternative of `rule`, the stack positions[0..depth) with that
 * alternative's first element on top (with nothing added for an empty alternative).
 * positions has room for depth + 1. */
static int expand_rule(const Grammar *g, int *positions, int depth, uint32_t rule,
                       GrammarStackSet *out, Error *err)
{
    for (size_t i = g->rule_start[rule];; i++) {
        int n = depth;
        if (!ends_alternative(g->elements[i].type))
            positions[n++] = (int)i;
        if (expand(g, positions, n, out, err) != 0)
            return -1;
        i = alternative_end(g->elements, i);
        if (g->elements[i].type == GRAMMAR_END)
            return 0;
    }
}

/* Adds to `out` every stack that positions[0..depth) becomes once its top is a character
 * class (or it is empty): a rule reference on top is replaced by each of the rule's
 * alternatives, with the place after the reference below it (left out when the reference
 * ends its alternative: nothing is left to do there, which keeps right recursion such as
 * `list ::= item list |` from growing the stack). The grammar has no left recursion, so
 * this ends. */
static int expand(const Grammar *g, const int *positions, int depth, GrammarStackSet *out,
                  Error *err)
{
    if (depth == 0 || g->elements[positions[depth - 1]].type != GRAMMAR_RULE_REF)
        return stack_set_add(out, positions, depth, err);
    int ref = positions[depth - 1];
    int base = depth - 1;
    int local[STACK_LOCAL];
    int *next = stack_room(local, depth + 1, err);
    if (!next)
        return -1;
    memcpy(next, positions, (size_t)base * sizeof *next);
    if (!ends_alternative(g->elements[ref + 1].type))
        next[base++] = ref + 1;
    int status = expand_rule(g, next, base, g->elements[ref].value, out, err);
    stack_room_release(next, local);
    return status;
}

/* Whether the class starting at elements[i] contains a code point in [low, high]; for one
 * code point, low == high. A negated class is asked whether some point of [low, high] lies
 * outside one of its ranges, which for a wider span is a "perhaps" (see partial_fits). */
static bool class_matches(const GrammarElement *e, size_t i, uint32_t low, uint32_t high)
{
    if (e[i].type == GRAMMAR_CHAR_ANY)
        return true;
    bool negated = e[i].type == GRAMMAR_CHAR_NOT;
    for (size_t j = i, end = class_end(e, i); j < end; j++) {
        if (e[j].type == GRAMMAR_CHAR_UPPER)
            continue;
        uint32_t a = e[j].value;
        uint32_t b = e[j + 1].type == GRAMMAR_CHAR_UPPER ? e[j + 1].value : a;
        bool overlaps = a <= high && low <= b, covers = a <= low && high <= b;
        if (!negated && overlaps)
            return true;
        if (negated && covers)
            return false;
    }
    return negated;
}

/* The stacks after reading code point cp: each stack whose top class holds it moves past
 * that class (and is expanded again); the others end. */
static int advance(const Grammar *g, const GrammarStackSet *from, uint32_t cp,
                   GrammarStackSet *to, Error *err)
{
    for (size_t s = 0; s < from->n; s++) {
        const GrammarStack *st = &from->items[s];
        if (st->depth == 0)
            continue;
        int top = st->positions[st->depth - 1];
        if (!class_matches(g->elements, (size_t)top, cp, cp))
            continue;
        int local[STACK_LOCAL];
        int *next = stack_room(local, st->depth, err);
        if (!next)
            return -1;
        memcpy(next, st->positions, (size_t)st->depth * sizeof *next);
        int depth = st->depth - 1;
        int after = (int)class_end(g->elements, (size_t)top);
        if (!ends_alternative(g->elements[after].type))
            next[depth++] = after;
        int status = expand(g, next, depth, to, err);
        stack_room_release(next, local);
        if (status != 0)
            return -1;
    }
    return 0;
}

/* The code points a started UTF-8 character (pending[0..n), a valid start: utf8_decode
 * said so) can still become: its bits so far, followed by all-zero or all-one
 * continuation bits, within the range that its length encodes. */
static void partial_range(const unsigned char *pending, int n, uint32_t *low, uint32_t *high)
{
    static const uint32_t smallest[5] = {0, 0, 0x80, 0x800, 0x10000};
    int len = (int)utf8_len(pending[0]);
    uint32_t bits = pending[0] & (0x7F >> len);
    for (int i = 1; i < n; i++)
        bits = bits << 6 | (pending[i] & 0x3F);
    int missing = 6 * (len - n);
    *low = bits << missing;
    *high = (bits << missing) | ((1u << missing) - 1);
    if (*low < smallest[len])
        *low = smallest[len];
    if (*high > 0x10FFFF)
        *high = 0x10FFFF;
}

/* Whether some stack's next class could take the character that pending starts. */
static bool partial_fits(const Grammar *g, const GrammarStackSet *s, const unsigned char *pending,
                         int n)
{
    uint32_t low, high;
    partial_range(pending, n, &low, &high);
    for (size_t i = 0; i < s->n; i++)
        if (s->items[i].depth > 0 &&
            class_matches(g->elements, (size_t)s->items[i].positions[s->items[i].depth - 1], low,
                          high))
            return true;
    return false;
}

/* Copies `from` into `to` (empty): a set has no duplicates, so nothing is compared. */
static int stack_set_copy(const GrammarStackSet *from, GrammarStackSet *to, Error *err)
{
    if (buffer_reserve_items(&to->items, &to->cap, from->n, sizeof *to->items, 8,
                             "grammar parse stacks", err) != 0)
        return -1;
    for (size_t i = 0; i < from->n; i++) {
        const GrammarStack *st = &from->items[i];
        int *copy = malloc((size_t)(st->depth > 0 ? st->depth : 1) * sizeof *copy);
        if (!copy)
            return error_set(err, "out of memory for a grammar parse stack");
        memcpy(copy, st->positions, (size_t)st->depth * sizeof *copy);
        to->items[to->n++] = (GrammarStack){copy, st->depth};
    }
    return 0;
}

/* Each completed character is read from the stacks so far (m's own until the first one:
 * they are never copied only to be replaced) into new ones; bytes of a character begun wait
 * in out->pending. m's stacks are copied only when no character completes. */
int grammar_matcher_advance(const GrammarMatcher *m, const unsigned char *bytes, size_t n,
                            GrammarMatcher *out, bool *allowed, Error *err)
{
    *out = (GrammarMatcher){.grammar = m->grammar, .n_pending = m->n_pending};
    memcpy(out->pending, m->pending, sizeof out->pending);
    const GrammarStackSet *current = &m->stacks;
    *allowed = false;
    for (size_t i = 0; i < n; i++) {
        out->pending[out->n_pending++] = bytes[i];
        uint32_t cp;
        int got = utf8_decode(out->pending, (size_t)out->n_pending, &cp);
        if (got < 0 && -got == out->n_pending && out->n_pending < (int)utf8_len(out->pending[0])) {
            if (!partial_fits(m->grammar, current, out->pending, out->n_pending))
                return 0;
            continue; /* a character begun: wait for the rest of it */
        }
        if (got < 0)
            return 0; /* not UTF-8 */
        out->n_pending = 0;
        GrammarStackSet next = {0};
        int status = advance(m->grammar, current, cp, &next, err);
        stack_set_free(&out->stacks);
        out->stacks = next;
        current = &out->stacks;
        if (status != 0)
            return -1;
        if (out->stacks.n == 0)
            return 0;
    }
    if (current == &m->stacks && stack_set_copy(&m->stacks, &out->stacks, err) != 0)
        return -1;
    *allowed = true;
    return 0;
}

int grammar_matcher_init(GrammarMatcher *m, const Grammar *g, Error *err)
{
    *m = (GrammarMatcher){.grammar = g};
    int position; /* the start: a stack for each of root's alternatives */
    int status = expand_rule(g, &position, 0, (uint32_t)g->root, &m->stacks, err);
    if (status != 0)
        grammar_matcher_free(m);
    return status;
}

void grammar_matcher_free(GrammarMatcher *m)
{
    stack_set_free(&m->stacks);
    m->n_pending = 0;
}

int grammar_matcher_allows(const GrammarMatcher *m, const unsigned char *bytes, size_t n,
                           bool *allowed, Error *err)
{
    GrammarMatcher trial;
    int status = grammar_matcher_advance(m, bytes, n, &trial, allowed, err);
    grammar_matcher_free(&trial);
    return status;
}

int grammar_matcher_feed(GrammarMatcher *m, const unsigned char *bytes, size_t n,
                         bool *allowed, Error *err)
{
    GrammarMatcher next;
    int status = grammar_matcher_advance(m, bytes, n, &next, allowed, err);
    if (status != 0 || !*allowed) {
        grammar_matcher_free(&next);
        return status;
    }
    grammar_matcher_free(m);
    *m = next;
    return 0;
}

bool grammar_matcher_is_complete(const GrammarMatcher *m)
{
    if (m->n_pending > 0)
        return false;
    for (size_t i = 0; i < m->stacks.n; i++)
        if (m->stacks.items[i].depth == 0)
            return true;
    return false;
}

bool grammar_matcher_can_continue(const GrammarMatcher *m)
{
    for (size_t i = 0; i < m->stacks.n; i++)
        if (m->stacks.items[i].depth > 0)
            return true;
    return false;
}

int grammar_accepts(const Grammar *g, const char *text, size_t len, bool *accepted, Error *err)
{
    GrammarMatcher m;
    if (grammar_matcher_init(&m, g, err) != 0)
        return -1;
    bool inside;
    int status = grammar_matcher_feed(&m, (const unsigned char *)text, len, &inside, err);
    *accepted = status == 0 && inside && grammar_matcher_is_complete(&m);
    grammar_matcher_free(&m);
    return status;
}

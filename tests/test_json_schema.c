/* JSON Schema to GBNF (src/json_schema.h): the verdicts of the grammar a schema becomes, for
 * each family of keywords; integer ranges against plain arithmetic; the errors that name an
 * unsupported keyword and where it is; quill grammar --json-schema, --json and --print; and
 * quill generate --json-schema on stories260K over 50 seeds, each output parsed as JSON and
 * validated against the schema by an independent validator (Debian's python3-jsonschema).
 *
 * Every verdict below was written by hand. Each text a grammar accepts is also checked by
 * python3-jsonschema: the grammar may accept fewer texts than the schema (properties in the
 * schema's order, bounded whitespace), never one that the schema refuses. */
#include <criterion/criterion.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fileio.h"
#include "json_schema.h"
#include "test_util.h"

typedef struct {
    const char *text;
    bool accepted;
} Verdict;

typedef struct {
    const char *name;
    const char *schema;
    Verdict verdicts[24];
    int n_verdicts;
} SchemaCase;

static const SchemaCase FAMILIES[] = {
    {"scalar_types", "{\"type\": [\"boolean\", \"null\", \"number\"]}",
     {
      {"true", true}, {"false", true}, {"null", true}, {"0", true}, {"-1.5", true},
      {"2.5e10", true}, {"1E-3", true}, {"-0.25", true}, {"true ", true}, {"3\n  ", true},
      {"True", false}, {"nul", false}, {"01", false}, {"1.", false}, {".5", false},
      {"+1", false}, {"\"true\"", false}, {"[]", false}, {" true", false}, {"truefalse", false},
      {"1e", false}, {"NaN", false}
     }, 22},
    {"string_and_integer", "{\"type\": [\"string\", \"integer\"]}",
     {
      {"\"\"", true}, {"\"hello\"", true}, {"\"a\\\"b\"", true}, {"\"tab\\there\"", true},
      {"\"\\u00e9t\\u00E9\"", true}, {"\"caf\xc3\xa9\"", true}, {"\"\\/\\\\\"", true},
      {"42", true}, {"-7", true}, {"0", true}, {"1.5", false}, {"\"a", false},
      {"\"a\"\"", false}, {"\"\\x\"", false}, {"\"\\u12\"", false}, {"\"line\nbreak\"", false},
      {"'single'", false}, {"007", false}, {"-", false}, {"null", false}, {"1e3", false},
      {"\"a\\\"", false}
     }, 22},
    {"object_required_and_optional",
     "{\"type\": \"object\", \"properties\": {\"a\": {\"type\": \"integer\"}, \"b\": {\"type\": "
     "\"string\"}, \"c\": {\"type\": \"boolean\"}}, \"required\": [\"b\"]}",
     {
      {"{\"b\": \"x\"}", true}, {"{\"a\": 1, \"b\": \"x\"}", true},
      {"{\"b\": \"x\", \"c\": true}", true}, {"{\"a\": 1, \"b\": \"x\", \"c\": false}", true},
      {"{\"a\":1,\"b\":\"\"}", true}, {"{ \"b\" : \"x\" }", true},
      {"{\n  \"a\": 2,\n  \"b\": \"y\"\n}", true}, {"{}", false}, {"{\"a\": 1}", false},
      {"{\"c\": true}", false}, {"{\"b\": \"x\", \"a\": 1}", false},
      {"{\"b\": 1}", false}, {"{\"b\": \"x\", \"d\": 1}", false}, {"{\"b\": \"x\",}", false},
      {"{,\"b\": \"x\"}", false}, {"{\"a\": 1 \"b\": \"x\"}", false},
      {"{\"b\": \"x\", \"b\": \"y\"}", false}, {"[\"b\"]", false}, {"{\"B\": \"x\"}", false},
      {"{\"a\": 1.5, \"b\": \"x\"}", false}, {"{\"b\": \"x\", \"c\": null}", false}
     }, 21},
    {"object_optional_only",
     "{\"properties\": {\"x\": {\"type\": \"null\"}, \"y\": {\"type\": \"null\"}}}",
     {
      {"{}", true}, {"{\"x\": null}", true}, {"{\"y\": null}", true},
      {"{\"x\": null, \"y\": null}", true}, {"{ }", true}, {"{\"y\":null }", true},
      {"{\"y\": null, \"x\": null}", false}, {"{\"x\": null,}", false}, {"{,}", false},
      {"{\"z\": null}", false}, {"{\"x\": 0}", false}, {"{\"x\": null \"y\": null}", false},
      {"{\"x\": null, \"x\": null}", false}, {"{\"x\"}", false}, {"{\"x\": }", false},
      {"null", false}, {"{\"x\": null, \"y\": null, \"z\": null}", false}, {"{x: null}", false},
      {"{\"x\": nul}", false}, {"{\"y\": null,, \"x\": null}", false}
     }, 20},
    {"additional_properties_schema",
     "{\"type\": \"object\", \"properties\": {\"id\": {\"type\": \"integer\"}}, "
     "\"additionalProperties\": {\"type\": \"string\"}}",
     {
      {"{}", true}, {"{\"id\": 1}", true}, {"{\"name\": \"x\"}", true},
      {"{\"id\": 1, \"name\": \"x\"}", true}, {"{\"id\": 1, \"a\": \"x\", \"b\": \"y\"}", true},
      {"{\"i\": \"x\"}", true}, {"{\"idx\": \"x\"}", true}, {"{\"\": \"x\"}", true},
      {"{\"Id\": \"x\"}", true}, {"{\"a\": \"x\", \"b\": \"y\"}", true},
      {"{\"id\": \"x\"}", false}, {"{\"name\": 1}", false}, {"{\"name\": \"x\", \"id\": 1}", false},
      {"{\"id\": 1, \"id\": 2}", false}, {"{\"a\": \"x\",}", false}, {"{\"a\" \"x\"}", false},
      {"{\"a\": null}", false}, {"{\"id\": 1.5}", false}, {"{\"a\\\"\": \"x\"}", false},
      {"[1]", false}
     }, 20},
    {"additional_properties_true_and_false",
     "{\"type\": \"object\", \"properties\": {\"keep\": {\"type\": \"object\", "
     "\"additionalProperties\": false}, \"open\": {\"type\": \"object\", "
     "\"properties\": {\"k\": {\"const\": 1}}, \"additionalProperties\": true}}}",
     {
      {"{}", true}, {"{\"keep\": {}}", true}, {"{\"open\": {}}", true},
      {"{\"open\": {\"k\": 1}}", true}, {"{\"open\": {\"z\": [1, {\"a\": null}]}}", true},
      {"{\"open\": {\"k\": 1, \"z\": \"x\"}}", true}, {"{\"open\": {\"kk\": 2}}", true},
      {"{\"keep\": {}, \"open\": {\"x\": true}}", true}, {"{\"open\": {\"K\": 2}}", true},
      {"{\"keep\": {\"a\": 1}}", false}, {"{\"open\": {\"k\": 2}}", false},
      {"{\"open\": {\"k\": 1, \"k\": 1}}", false}, {"{\"open\": []}", false},
      {"{\"keep\": null}", false}, {"{\"other\": {}}", false}, {"{\"open\": {\"z\": }}", false},
      {"{\"open\": {\"z\": 1,}}", false}, {"{\"keep\": {}, \"keep\": {}}", false},
      {"{\"open\": {\"k\": 1}, \"keep\": {}}", false}, {"{\"keep\": {\"\": 1}}", false}
     }, 20},
    {"enum_and_const",
     "{\"type\": \"array\", \"items\": {\"anyOf\": [{\"enum\": [\"red\", 2, null, true, "
     "[1, \"a\"], {\"k\": \"v\"}]}, {\"const\": \"tea\"}]}}",
     {
      {"[]", true}, {"[\"red\"]", true}, {"[2]", true}, {"[null]", true}, {"[true]", true},
      {"[[1,\"a\"]]", true}, {"[{\"k\":\"v\"}]", true}, {"[\"tea\", \"red\", 2]", true},
      {"[\"red\" , \"tea\" ]", true}, {"[\"Red\"]", false}, {"[2.0]", false}, {"[3]", false},
      {"[false]", false}, {"[[1, \"a\"]]", false}, {"[{\"k\": \"v\"}]", false},
      {"[\"coffee\"]", false}, {"[\"te\"]", false}, {"[red]", false}, {"[\"red\",]", false},
      {"[\"tea\" \"red\"]", false}
     }, 20},
    {"array_items_and_bounds",
     "{\"type\": \"array\", \"items\": {\"type\": \"integer\"}, \"minItems\": 2, "
     "\"maxItems\": 4}",
     {
      {"[1, 2]", true}, {"[1,2,3]", true}, {"[1, 2, 3, 4]", true}, {"[ 1 , 2 ]", true},
      {"[-1, 0]", true}, {"[\n 1,\n 2\n]", true}, {"[1, 2]\n", true}, {"[]", false},
      {"[1]", false}, {"[1, 2, 3, 4, 5]", false}, {"[1, \"2\"]", false}, {"[1, 2,]", false},
      {"[,1, 2]", false}, {"[1 2]", false}, {"[1.5, 2]", false}, {"[[1], [2]]", false},
      {"{}", false}, {"[1, 2", false}, {"1, 2", false}, {"[null, 1]", false}
     }, 20},
    {"array_without_items",
     "{\"type\": \"array\", \"maxItems\": 2}",
     {
      {"[]", true}, {"[1]", true}, {"[\"a\", {}]", true}, {"[[], null]", true},
      {"[true, false]", true}, {"[{\"a\": [1, 2, 3]}]", true}, {"[ ]", true},
      {"[1, 2, 3]", false}, {"[1,]", false}, {"[", false}, {"]", false}, {"[,]", false},
      {"[1 2]", false}, {"[[1, 2, 3], 4, 5]", false}, {"null", false}, {"[undefined]", false},
      {"[1, 2, [3]]", false}, {"[\"a\" \"b\"]", false}, {"[[]", false}, {"[]]", false}
     }, 20},
    {"string_lengths", "{\"type\": \"string\", \"minLength\": 2, \"maxLength\": 4}",
     {
      {"\"ab\"", true}, {"\"abc\"", true}, {"\"abcd\"", true}, {"\"\\n\\t\"", true},
      {"\"\xc3\xa9t\xc3\xa9\"", true}, {"\"a\\u0041\"", true}, {"\"  \"", true},
      {"\"\\\"\\\"\"", true}, {"\"a b \"", true}, {"\"\"", false}, {"\"a\"", false},
      {"\"abcde\"", false}, {"\"\\n\"", false}, {"\"\xc3\xa9\"", false},
      {"\"\\u0041\"", false}, {"ab", false}, {"\"ab", false}, {"12", false},
      {"\"a\\u00\"", false}, {"\"abc\\\"d\"", false}, {"\"\\ud83d\\ude00\"", false},
      {"\"\xf0\x9f\x98\x80\xf0\x9f\x98\x80\"", true}
     }, 22},
    {"integer_range", "{\"type\": \"integer\", \"minimum\": -12, \"exclusiveMaximum\": 250}",
     {
      {"-12", true}, {"-1", true}, {"0", true}, {"9", true}, {"10", true}, {"99", true},
      {"100", true}, {"199", true}, {"249", true}, {"-10", true}, {"-13", false},
      {"-100", false}, {"250", false}, {"300", false}, {"1000", false}, {"-0", false},
      {"007", false}, {"1.0", false}, {"24 9", false}, {"2e2", false}, {"", false},
      {"+5", false}
     }, 22},
    {"pattern",
     "{\"type\": \"string\", \"pattern\": \"^[A-Z][a-z]*(-\\\\d{2,3})?( (yes|no))?$\"}",
     {
      {"\"A\"", true}, {"\"Abc\"", true}, {"\"Ab-12\"", true}, {"\"Ab-123\"", true},
      {"\"Z yes\"", true}, {"\"Cat-99 no\"", true}, {"\"Q-000\"", true}, {"\"a\"", false},
      {"\"AB\"", false}, {"\"Ab-1\"", false}, {"\"Ab-1234\"", false}, {"\"Ab yes no\"", false},
      {"\"Ab maybe\"", false}, {"\"\"", false}, {"\"Ab-12yes\"", false}, {"\"Ab \"", false},
      {"\"-12\"", false}, {"\"Ab-xy\"", false}, {"Abc", false}, {"\"\xc3\x89t\xc3\xa9\"", false}
     }, 20},
    {"pattern_unanchored_and_escapes",
     "{\"type\": \"string\", \"pattern\": \"(a|b)+[\\\"\\\\\\\\.]\\\\s?x{2}\"}",
     {
      {"\"ab.xx\"", true}, {"\"a\\\"xx\"", true}, {"\"b\\\\xx\"", true},
      {"\"aaa. xx\"", true}, {"\"zzz ba.xx tail\"", true}, {"\"b.\\txx\"", true},
      {"\"a.\\nxx\"", true}, {"\"-a.xx-\"", true}, {"\"a.x\"", false}, {"\"ab,xx\"", false},
      {"\"c.xx\"", false}, {"\"a..xx\"", false}, {"\"a.  xx\"", false}, {"\"a\"", false},
      {"\"\"", false}, {"\".xx\"", false}, {"\"a\\\\\\\\xx\"", false}, {"\"a.\nxx\"", false},
      {"ab.xx", false}, {"\"a.yy\"", false}
     }, 20},
    {"any_one_all_of",
     "{\"type\": \"array\", \"items\": {\"oneOf\": [{\"type\": \"boolean\"}, {\"allOf\": "
     "[{\"type\": \"object\", \"properties\": {\"a\": {\"type\": \"integer\"}}, "
     "\"required\": [\"a\"]}, {\"properties\": {\"b\": {\"type\": \"string\"}}}]}, {\"anyOf\": [{\"type\": \"null\"}, "
     "{\"type\": \"string\", \"maxLength\": 1}]}]}}",
     {
      {"[]", true}, {"[true]", true}, {"[{\"a\": 1}]", true}, {"[{\"a\": 1, \"b\": \"x\"}]", true},
      {"[null]", true}, {"[\"x\"]", true}, {"[\"\"]", true}, {"[false, null, \"y\", {\"a\": 0}]", true},
      {"[{}]", false}, {"[{\"b\": \"x\"}]", false}, {"[{\"b\": \"x\", \"a\": 1}]", false},
      {"[{\"a\": 1, \"c\": 2}]", false}, {"[\"xy\"]", false}, {"[1]", false}, {"[[]]", false},
      {"[{\"a\": \"1\"}]", false}, {"[nul]", false}, {"[true, ]", false}, {"true", false},
      {"[{\"a\": 1, \"b\": 2}]", false}
     }, 20},
    {"ref_recursive",
     "{\"$defs\": {\"tree\": {\"type\": \"object\", \"properties\": {\"v\": {\"$ref\": "
     "\"#/definitions/leaf\"}, \"kids\": {\"type\": \"array\", \"items\": {\"$ref\": "
     "\"#/$defs/tree\"}}}, \"required\": [\"v\"]}}, \"definitions\": {\"leaf\": {\"type\": "
     "\"integer\", \"minimum\": 0, \"maximum\": 9}}, \"$ref\": \"#/$defs/tree\"}",
     {
      {"{\"v\": 1}", true}, {"{\"v\": 0, \"kids\": []}", true},
      {"{\"v\": 1, \"kids\": [{\"v\": 2}]}", true},
      {"{\"v\": 1, \"kids\": [{\"v\": 2, \"kids\": [{\"v\": 3}]}, {\"v\": 4}]}", true},
      {"{\"v\":9,\"kids\":[{\"v\":9,\"kids\":[{\"v\":9,\"kids\":[]}]}]}", true},
      {"{\"v\": 5}\n", true}, {"{\"v\": 10}", false}, {"{\"v\": -1}", false}, {"{}", false},
      {"{\"kids\": []}", false}, {"{\"v\": 1, \"kids\": [{}]}", false},
      {"{\"v\": 1, \"kids\": [1]}", false}, {"{\"v\": 1, \"kids\": {}}", false},
      {"{\"v\": 1, \"kids\": [{\"v\": 2, \"kids\": [{\"v\": 33}]}]}", false},
      {"{\"kids\": [], \"v\": 1}", false}, {"[{\"v\": 1}]", false}, {"{\"v\": \"1\"}", false},
      {"{\"v\": 1, \"kids\": [{\"v\": 2},]}", false}, {"{\"v\": 1, \"x\": 2}", false},
      {"{\"v\": 1, \"kids\": [{\"v\": 2}]", false}
     }, 20},
    {"formats",
     "{\"type\": \"array\", \"items\": {\"anyOf\": [{\"format\": \"date\"}, {\"type\": "
     "\"string\", \"format\": \"time\"}, {\"format\": \"date-time\"}, {\"format\": \"uuid\"}]}}",
     {
      {"[\"2024-02-29\"]", true}, {"[\"1999-12-31\"]", true}, {"[\"23:59:59Z\"]", true},
      {"[\"08:30:00.123+02:00\"]", true}, {"[\"2024-01-01T00:00:00Z\"]", true},
      {"[\"2024-01-01T12:00:00-05:30\"]", true},
      {"[\"123e4567-e89b-12d3-a456-426614174000\"]", true},
      {"[\"ABCDEF01-2345-6789-abcd-ef0123456789\"]", true}, {"[\"2024-13-01\"]", false},
      {"[\"2024-00-10\"]", false}, {"[\"2024-01-32\"]", false}, {"[\"24-01-01\"]", false},
      {"[\"24:00:00Z\"]", false}, {"[\"12:60:00Z\"]", false}, {"[\"12:00:00\"]", false},
      {"[\"2024-01-01 00:00:00Z\"]", false}, {"[\"123e4567e89b12d3a456426614174000\"]", false},
      {"[\"123e4567-e89b-12d3-a456-42661417400g\"]", false}, {"[2024]", false},
      {"[\"12:00Z\"]", false}
     }, 20},
    {"any_json_value", JSON_SCHEMA_ANY_VALUE,
     {
      {"null", true}, {"0", true}, {"\"s\"", true}, {"[]", true}, {"{}", true},
      {"{\"a\": [1, {\"b\": null}], \"c\": \"d\"}", true}, {"[1, -2.5e-3, true, \"x\"]", true},
      {"{\"\": {}}", true}, {"[[[[]]]]", true}, {"{\n\t\"k\": 1\n}", true}, {"", false},
      {"nul", false}, {"{\"a\"}", false}, {"{a: 1}", false}, {"[1,]", false},
      {"{\"a\": 1,}", false}, {"'x'", false}, {"[1] [2]", false}, {" []", false},
      {"Infinity", false}, {"{\"a\" 1}", false}
     }, 21},
    {"whitespace_bounded", "{\"type\": \"array\", \"items\": {\"type\": \"integer\"}}",
     {
      {"[1,2]", true}, {"[ 1, 2 ]", true}, {"[\n1,\n2\n]", true}, {"[\n\t\t1\n]", true},
      {"[\n                    1]", true}, {"[1 ]\n  ", true}, {"[1]\n", true},
      {"[\n\t \t 1 , 2]", true}, {"[\n                     1]", false}, {"[  1]", false},
      {"[1  ]", false}, {"[\n\n1]", false}, {"[ \n1]", false}, {"[\t1]", false},
      {"[1\r\n]", false}, {"[1] ", true}, {"[1]  ", false}, {"[1,\n\n2]", false},
      {" [1]", false}, {"[1 ,  2]", false}
     }, 20},
};
#define N_FAMILIES (sizeof FAMILIES / sizeof *FAMILIES)

static int count_lines(const char *text, const char *prefix)
{
    int n = 0;
    size_t len = strlen(prefix);
    for (const char *line = text; *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : "")
        n += strncmp(line, prefix, len) == 0;
    return n;
}

/* The family's verdicts, each compared; the accepted texts join `accepted` as [schema, text]
 * for the validator. Returns how many were compared. */
static int check_family(const SchemaCase *f, cJSON *accepted)
{
    Grammar g;
    Error err;
    cr_assert_eq(json_schema_grammar(f->schema, strlen(f->schema), &g, &err), 0, "%s: %s",
                 f->name, err.msg);
    int compared = 0;
    for (int i = 0; i < f->n_verdicts; i++) {
        const Verdict *v = &f->verdicts[i];
        bool got;
        cr_assert_eq(grammar_accepts(&g, v->text, strlen(v->text), &got, &err), 0);
        cr_expect_eq(got, v->accepted, "%s: '%s' should be %s", f->name, v->text,
                     v->accepted ? "accepted" : "rejected");
        if (got) {
            cJSON *pair = cJSON_CreateArray();
            cJSON_AddItemToArray(pair, cJSON_CreateString(f->schema));
            cJSON_AddItemToArray(pair, cJSON_CreateString(v->text));
            cJSON_AddItemToArray(accepted, pair);
        }
        compared++;
    }
    grammar_free(&g);
    return compared;
}

Test(json_schema, every_family_of_keywords_gives_its_verdicts, .timeout = 120)
{
    cJSON *accepted = cJSON_CreateArray();
    int compared = 0, families = 0;
    for (size_t i = 0; i < N_FAMILIES; i++) {
        const SchemaCase *f = &FAMILIES[i];
        cr_assert_geq(f->n_verdicts, 20, "%s has fewer than 20 cases", f->name);
        /* the count written down is the count of texts listed */
        cr_assert_not_null(f->verdicts[f->n_verdicts - 1].text, "%s", f->name);
        cr_assert(f->n_verdicts == 24 || !f->verdicts[f->n_verdicts].text, "%s", f->name);
        compared += check_family(&FAMILIES[i], accepted);
        families++;
    }
    cr_assert_eq(families, 18);
    cr_assert_eq(compared, 370);

    /* every accepted text is valid JSON that the schema accepts, says python3-jsonschema */
    test_json_validator_or_skip();
    char *json = cJSON_PrintUnformatted(accepted);
    const char *path = test_write_file(test_make_tmpdir(), "accepted.json", json);
    char *out = test_json_validate_pairs(path);
    int n_accepted = cJSON_GetArraySize(accepted);
    cr_expect_eq(count_lines(out, "valid"), n_accepted, "%s", out);
    cr_expect_eq(count_lines(out, "invalid"), 0, "%s", out);
    cr_assert_eq(n_accepted, 151);
    free(out);
    free(json);
    cJSON_Delete(accepted);
}

/* ---------------------------------------------------------------- integer ranges */

/* The rule of minimum..maximum against plain arithmetic: every integer in a window around
 * both bounds, and a sweep between them, is accepted exactly when it lies in the range. */
static int check_range(long long lo, long long hi)
{
    char schema[160];
    snprintf(schema, sizeof schema, "{\"type\": \"integer\", \"minimum\": %lld, \"maximum\": %lld}",
             lo, hi);
    Grammar g;
    Error err;
    cr_assert_eq(json_schema_grammar(schema, strlen(schema), &g, &err), 0, "%s", err.msg);
    int compared = 0;
    long long step = (hi - lo) / 97 + 1;
    for (int side = 0; side < 3; side++) {
        long long from = side == 0 ? lo - 25 : side == 1 ? hi - 25 : lo;
        long long to = side == 2 ? hi : from + 50;
        for (long long x = from; x <= to; x += side == 2 ? step : 1) {
            char text[32];
            snprintf(text, sizeof text, "%lld", x);
            bool got;
            cr_assert_eq(grammar_accepts(&g, text, strlen(text), &got, &err), 0);
            cr_expect_eq(got, x >= lo && x <= hi, "[%lld, %lld]: %lld", lo, hi, x);
            compared++;
        }
    }
    grammar_free(&g);
    return compared;
}

Test(json_schema, integer_ranges_match_arithmetic, .timeout = 120)
{
    static const long long RANGES[][2] = {
        {0, 0},     {0, 9},       {1, 9},       {5, 5},        {0, 10},      {3, 47},
        {10, 99},   {11, 98},     {7, 1234},    {-5, 120},     {-12, 249},   {-100, -1},
        {-999, 999}, {-1, 0},     {100, 100000}, {123, 4567},  {-4321, -123}, {19, 20},
        {99, 101},  {-2001, 1999}, {0, 999999}, {1000, 1000},  {-7, -7},     {555, 6666},
    };
    int compared = 0;
    for (size_t i = 0; i < sizeof RANGES / sizeof *RANGES; i++)
        compared += check_range(RANGES[i][0], RANGES[i][1]);
    cr_assert_geq(compared, 24 * 102);
}

/* Only one side bounded: the other is open, up to 16 digits. */
Test(json_schema, one_sided_ranges)
{
    static const Verdict AT_LEAST_7[] = {
        {"7", true},   {"8", true},  {"10", true},  {"70", true}, {"9999999999999999", true},
        {"6", false},  {"0", false}, {"-7", false}, {"-100", false}, {"07", false},
    };
    static const Verdict BELOW_MINUS_3[] = {
        {"-4", true},  {"-10", true}, {"-9999999999999999", true}, {"-3", false},
        {"0", false},  {"3", false},  {"-04", false}, {"4", false}, {"-2", false}, {"-", false},
    };
    const struct {
        const char *schema;
        const Verdict *verdicts;
    } CASES[] = {
        {"{\"type\": \"integer\", \"minimum\": 7}", AT_LEAST_7},
        {"{\"type\": \"integer\", \"exclusiveMaximum\": -3}", BELOW_MINUS_3},
    };
    int compared = 0;
    for (int c = 0; c < 2; c++) {
        Grammar g;
        Error err;
        cr_assert_eq(json_schema_grammar(CASES[c].schema, strlen(CASES[c].schema), &g, &err), 0);
        for (int i = 0; i < 10; i++) {
            const Verdict *v = &CASES[c].verdicts[i];
            bool got;
            cr_assert_eq(grammar_accepts(&g, v->text, strlen(v->text), &got, &err), 0);
            cr_expect_eq(got, v->accepted, "%s: %s", CASES[c].schema, v->text);
            compared++;
        }
        grammar_free(&g);
    }
    cr_assert_eq(compared, 20);
}

/* An extra key must differ from each listed name; a long name makes a chain of rules, not
 * groups nested as deep as it is long (which the grammar's parser refuses past 200). */
Test(json_schema, extra_keys_differ_from_a_long_listed_name)
{
    char a[302], schema[600], text[400];
    memset(a, 'a', 301);
    a[301] = '\0';
    snprintf(schema, sizeof schema, "{\"properties\": {\"%.300s\": {\"type\": \"string\"}}, "
                                    "\"additionalProperties\": {\"type\": \"integer\"}}", a);
    Grammar g;
    Error err;
    cr_assert_eq(json_schema_grammar(schema, strlen(schema), &g, &err), 0, "%s", err.msg);
    const struct {
        int length;
        const char *value;
        bool accepted;
    } CASES[] = {{300, "\"x\"", true}, {300, "1", false}, {299, "1", true}, {301, "1", true},
                 {299, "\"x\"", false}, {1, "2", true}};
    int compared = 0;
    for (int i = 0; i < 6; i++) {
        snprintf(text, sizeof text, "{\"%.*s\": %s}", CASES[i].length, a, CASES[i].value);
        bool got;
        cr_assert_eq(grammar_accepts(&g, text, strlen(text), &got, &err), 0);
        cr_expect_eq(got, CASES[i].accepted, "case %d: %s", i, text);
        compared++;
    }
    cr_assert_eq(compared, 6);
    grammar_free(&g);
}

/* ---------------------------------------------------------------- what is refused */

typedef struct {
    const char *schema;
    const char *message; /* the whole of err.msg */
} BadSchema;

/* Each keyword that would change what is valid, and is not handled, is an error naming it
 * and where it is (a JSON pointer into the schema), never skipped. */
static const BadSchema BAD_SCHEMAS[] = {
    {"{\"not\": {\"type\": \"null\"}}", "#: keyword 'not' is not supported"},
    {"{\"type\": \"object\", \"properties\": {\"a\": {\"patternProperties\": {}}}}",
     "#/properties/a: keyword 'patternProperties' is not supported"},
    {"{\"properties\": {\"a/b~c\": {\"uniqueItems\": true}}}",
     "#/properties/a~1b~0c: keyword 'uniqueItems' is not supported"},
    {"{\"type\": \"array\", \"items\": {\"multipleOf\": 2}}",
     "#/items: keyword 'multipleOf' is not supported"},
    {"{\"type\": \"array\", \"prefixItems\": [true]}", "#: keyword 'prefixItems' is not supported"},
    {"{\"type\": \"number\", \"minimum\": 0.5}",
     "#: minimum is supported for type integer only, not number"},
    {"{\"exclusiveMaximum\": 3}",
     "#: exclusiveMaximum is supported for type integer only, not number"},
    {"{\"$ref\": \"https://example.com/s.json\"}",
     "#: $ref 'https://example.com/s.json' points outside the document: not supported"},
    {"{\"$ref\": \"#/$defs/missing\"}", "#: $ref '#/$defs/missing' points to nothing"},
    {"{\"$defs\": {\"a\": {\"type\": \"string\", \"format\": \"email\"}}, \"$ref\": \"#/$defs/a\"}",
     "#/$defs/a: format 'email' is not supported (date, time, date-time and uuid are)"},
    {"{\"type\": \"string\", \"pattern\": \"a(?=b)\"}",
     "#: pattern: a group of the form (?...) other than (?:...) (at offset 2) is not supported"},
    {"{\"type\": \"string\", \"pattern\": \"\\\\bword\"}",
     "#: pattern: the escape '\\b' (at offset 0) is not supported"},
    {"{\"type\": \"string\", \"pattern\": \"(a)\\\\1\"}",
     "#: pattern: the escape '\\1' (at offset 3) is not supported"},
    {"{\"type\": \"string\", \"pattern\": \"a*?\"}",
     "#: pattern: a lazy or possessive quantifier (at offset 2) is not supported"},
    {"{\"type\": \"string\", \"pattern\": \"a^b\"}",
     "#: pattern: '^' not at the start (at offset 1) is not supported"},
    {"{\"type\": \"string\", \"pattern\": \"[abc\"}",
     "#: pattern: a class without its ']' (at offset 4) is not supported"},
    {"{\"type\": \"string\", \"pattern\": \"^a\", \"maxLength\": 3}",
     "#: only one of pattern, format and minLength/maxLength is supported in a string schema"},
    {"{\"type\": \"integer\", \"minimum\": 5, \"maximum\": 4}",
     "#: no integer lies between the minimum and the maximum"},
    {"{\"type\": \"array\", \"minItems\": 3, \"maxItems\": 2}",
     "#: minItems 3 is above maxItems 2: nothing can match"},
    {"{\"type\": \"string\", \"maxLength\": 20000}",
     "#: maxLength above 10000 is not supported (the grammar writes out each one)"},
    {"{\"type\": \"string\", \"minLength\": -1}", "#: minLength must be a non-negative integer"},
    {"{\"enum\": [1, 2], \"type\": \"string\"}",
     "#: no value of enum has the schema's type: nothing can match"},
    {"{\"enum\": [\"a\"], \"maxLength\": 3}", "#: 'maxLength' beside 'enum' is not supported"},
    {"{\"anyOf\": [{\"type\": \"null\"}], \"type\": \"null\"}",
     "#: 'type' beside 'anyOf' is not supported"},
    {"{\"oneOf\": []}", "#: oneOf must be a non-empty array"},
    {"{\"allOf\": [{\"type\": \"string\"}]}", "#/allOf/0: allOf is supported for object schemas only"},
    {"{\"allOf\": [{\"properties\": {}, \"additionalProperties\": false}]}",
     "#/allOf/0: 'additionalProperties' in a part of allOf is not supported"},
    {"{\"properties\": {\"a\": {}}, \"required\": [\"b\"]}",
     "#: required property 'b' is not in properties: not supported"},
    {"{\"type\": \"decimal\"}", "#: type 'decimal' is not a JSON Schema type"},
    {"{\"type\": [\"string\", 3]}", "#: type must be a string or a list of strings"},
    {"false", "#: the schema false matches nothing"},
    {"[1]", "#: a schema must be an object or a boolean"},
    {"{\"type\": \"object\"", "the schema is not valid JSON (near byte 16)"},
    {"{\"properties\": {\"\xeb\": {}}}", "the schema is not UTF-8 (byte 17)"},
    {"{\"$defs\": {\"a\": {\"$ref\": \"#/$defs/a\"}}, \"$ref\": \"#/$defs/a\"}",
     "rule 'a' is left-recursive: it can come back to itself before reading a character"},
};

Test(json_schema, unsupported_keywords_are_errors_naming_them)
{
    int compared = 0;
    for (size_t i = 0; i < sizeof BAD_SCHEMAS / sizeof *BAD_SCHEMAS; i++) {
        const BadSchema *b = &BAD_SCHEMAS[i];
        Grammar g;
        Error err = {{0}};
        cr_expect_neq(json_schema_grammar(b->schema, strlen(b->schema), &g, &err), 0, "%s",
                      b->schema);
        cr_expect_str_eq(err.msg, b->message, "%s", b->schema);
        compared++;
    }
    cr_assert_eq(compared, 35);
}

/* Annotations describe and constrain nothing: they are read past. */
Test(json_schema, annotations_are_ignored)
{
    const char *schema = "{\"$schema\": \"https://json-schema.org/draft/2020-12/schema\", "
                         "\"$id\": \"x\", \"title\": \"T\", \"description\": \"D\", "
                         "\"$comment\": \"c\", \"default\": 1, \"examples\": [1], "
                         "\"deprecated\": false, \"readOnly\": true, \"writeOnly\": false, "
                         "\"type\": \"integer\"}";
    Grammar g;
    Error err;
    cr_assert_eq(json_schema_grammar(schema, strlen(schema), &g, &err), 0, "%s", err.msg);
    bool got;
    cr_assert_eq(grammar_accepts(&g, "12", 2, &got, &err), 0);
    cr_expect(got);
    cr_assert_eq(grammar_accepts(&g, "\"T\"", 3, &got, &err), 0);
    cr_expect(!got);
    grammar_free(&g);
}

/* The GBNF text itself, for a small schema, as written by hand from the rules in
 * docs/grammars.md: root first, then the rules in the order they were made. */
Test(json_schema, the_gbnf_of_a_small_schema)
{
    const char *schema = "{\"type\": \"object\", \"properties\": {\"n\": {\"type\": \"integer\", "
                         "\"minimum\": 1, \"maximum\": 12}, \"ok\": {\"type\": \"boolean\"}}, "
                         "\"required\": [\"n\"]}";
    char *gbnf;
    Error err;
    cr_assert_eq(json_schema_to_gbnf(schema, strlen(schema), &gbnf, &err), 0, "%s", err.msg);
    cr_expect_str_eq(gbnf,
                     "root ::= \"{\" space ( root-n-kv ( \",\" space root-ok-kv )? ) \"}\" space\n"
                     "space ::= ( \" \" | \"\\n\" [ \\t]{0,20} )?\n"
                     "root-n ::= ( [1-9] | \"1\" [0-2] ) space\n"
                     "root-n-kv ::= \"\\\"n\\\"\" space \":\" space root-n\n"
                     "boolean ::= ( \"true\" | \"false\" ) space\n"
                     "root-ok-kv ::= \"\\\"ok\\\"\" space \":\" space boolean\n");
    free(gbnf);
}

/* ---------------------------------------------------------------- the commands */

Test(json_schema_cli, check_print_and_json)
{
    const char *path = test_write_file(test_make_tmpdir(), "s.json",
                                       "{\"type\": \"array\", \"items\": {\"enum\": [1, 2]}, "
                                       "\"maxItems\": 2}");
    char *out, *messages;
    int status;
    quill_stdout(&out, &messages, &status,
                 "grammar --json-schema %s --check '[1, 2]' '[3]' '[1,2,1]' --check -- '[]'", path);
    cr_assert_eq(status, 0, "%s", messages);
    cr_expect_str_eq(out, "accept\nreject\nreject\nreject\nreject\naccept\n");
    free(out);
    free(messages);

    quill_stdout(&out, &messages, &status, "grammar --json-schema @%s --print", path);
    cr_assert_eq(status, 0, "%s", messages);
    cr_expect_str_eq(out, "root ::= \"[\" space ( root-item ( \",\" space root-item )? )? \"]\" space\n"
                          "space ::= ( \" \" | \"\\n\" [ \\t]{0,20} )?\n"
                          "root-item ::= ( \"1\" | \"2\" ) space\n");
    free(out);
    free(messages);

    quill_stdout(&out, &messages, &status,
                 "grammar --json-schema '{\"type\": \"boolean\"}' --check true 1");
    cr_assert_eq(status, 0, "%s", messages);
    cr_expect_str_eq(out, "accept\nreject\n");
    free(out);
    free(messages);

    quill_stdout(&out, &messages, &status, "grammar --json --check '{\"a\": [1, null]}' '{a}'");
    cr_assert_eq(status, 0, "%s", messages);
    cr_expect_str_eq(out, "accept\nreject\n");
    free(out);
    free(messages);
}

/* One error line naming the problem, exit status 1, nothing on stdout. */
static void expect_error(const char *message, const char *fmt, const char *arg)
{
    char *out, *messages;
    int status;
    quill_stdout(&out, &messages, &status, fmt, arg);
    cr_expect_eq(status, 1, "%s", messages);
    cr_expect_str_eq(out, "");
    char expected[1024];
    snprintf(expected, sizeof expected, "quill: error: %s\n", message);
    cr_expect_str_eq(messages, expected);
    free(out);
    free(messages);
}

Test(json_schema_cli, errors_name_the_schema_and_the_keyword)
{
    const char *path = test_write_file(test_make_tmpdir(), "bad.json",
                                       "{\"items\": {\"not\": {}}}");
    char message[1024];
    snprintf(message, sizeof message, "%s: #/items: keyword 'not' is not supported", path);
    expect_error(message, "grammar --json-schema %s --check x", path);
    expect_error("--json-schema: #: keyword 'if' is not supported",
                 "grammar --json-schema %s --check x", "'{\"if\": {}}'");
    expect_error("give one grammar: --grammar, --grammar-file (or a FILE), --json or "
                 "--json-schema, not two",
                 "grammar --json --json-schema %s", "'{}'");
    expect_error("--print shows the grammar built from --json or --json-schema",
                 "grammar --grammar %s --print", "'root ::= \"a\"'");
}

/* A GBNF file is read whole, NUL bytes included: one is an error at its place, not the end
 * of the grammar. */
Test(json_schema_cli, a_grammar_file_is_read_whole)
{
    char path[512], message[700];
    snprintf(path, sizeof path, "%s/nul.gbnf", test_make_tmpdir());
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    fwrite("root ::= \"a\"\0 junk", 1, 18, f);
    fclose(f);
    snprintf(message, sizeof message, "%s: line 1, column 13: expecting the end of the line",
             path);
    expect_error(message, "grammar %s --check a", path);
}

Test(json_schema_cli, generate_refuses_two_grammars_and_bad_schemas, .timeout = 60)
{
    SHARED_FILE_OR_SKIP(model, "models/stories260K.gguf");
    char args[512];
    snprintf(args, sizeof args, "%s --prompt Once --json --grammar 'root ::= \"a\"'", model);
    expect_error("give one grammar: --grammar, --grammar-file (or a FILE), --json or "
                 "--json-schema, not two",
                 "generate %s", args);
    snprintf(args, sizeof args, "%s --prompt Once --json-schema '{\"type\": \"number\", "
                                "\"maximum\": 1.5}'", model);
    expect_error("--json-schema: #: maximum is supported for type integer only, not number",
                 "generate %s", args);
    snprintf(args, sizeof args, "%s --prompt Once --json --must-include cat", model);
    expect_error("--json and --must-include: one or the other (the words' tokens may be ones "
                 "the grammar refuses)",
                 "generate %s", args);
}

/* ---------------------------------------------------------------- generation */

/* A story character, small enough to bound: every text the schema's grammar allows is at
 * most about 790 bytes (27 whitespace places of at most 21 bytes, and at most 222 bytes of
 * keys, punctuation and values: 8 characters of a name and 3 tags of 6, each character
 * at most a 6-byte \uXXXX escape). Every token has at least one byte, so 1000 tokens are
 * always enough for the grammar to finish: every run must end as eos, with JSON closed. */
#define CHARACTER_SCHEMA                                                                   \
    "{\"type\": \"object\", \"properties\": {"                                             \
    "\"name\": {\"type\": \"string\", \"maxLength\": 8}, "                                 \
    "\"mood\": {\"enum\": [\"happy\", \"sad\", \"sleepy\"]}, "                             \
    "\"age\": {\"type\": \"integer\", \"minimum\": 1, \"maximum\": 99}, "                  \
    "\"tags\": {\"type\": \"array\", \"items\": {\"type\": \"string\", \"maxLength\": 6}, "  \
    "\"minItems\": 1, \"maxItems\": 3}, "                                                  \
    "\"pet\": {\"type\": \"boolean\"}}, "                                                  \
    "\"required\": [\"name\", \"age\", \"tags\"], \"additionalProperties\": false}"

Test(json_schema_generate, every_seed_gives_json_the_schema_accepts, .timeout = 300)
{
    SHARED_FILE_OR_SKIP(model, "models/stories260K.gguf");
    test_json_validator_or_skip();
    const char *dir = test_make_tmpdir();
    const char *schema_path = test_write_file(dir, "character.json", CHARACTER_SCHEMA);
    char jsonl[512];
    snprintf(jsonl, sizeof jsonl, "%s/out.jsonl", dir);
    cJSON *pairs = cJSON_CreateArray();
    int generated = 0, ended_as_eos = 0, with_optional = 0;
    for (int seed = 1; seed <= 50; seed++) {
        char *text, *messages;
        int status;
        quill_stdout(&text, &messages, &status,
                     "generate %s --prompt 'Once upon a time' --no-echo --seed %d -n 1000 "
                     "--context 1024 --json-schema @%s --output-file %s",
                     model, seed, schema_path, jsonl);
        cr_assert_eq(status, 0, "seed %d: %s", seed, messages);
        char *record;
        size_t len;
        Error err;
        cr_assert_eq(file_read_all(jsonl, &record, &len, &err), 0, "%s", err.msg);
        ended_as_eos += strstr(record, "\"finish_reason\":\"eos\"") != NULL;
        with_optional += strstr(text, "\"mood\"") || strstr(text, "\"pet\"");
        cJSON *pair = cJSON_CreateArray();
        cJSON_AddItemToArray(pair, cJSON_CreateString(CHARACTER_SCHEMA));
        cJSON_AddItemToArray(pair, cJSON_CreateString(text));
        cJSON_AddItemToArray(pairs, pair);
        generated++;
        free(record);
        free(text);
        free(messages);
    }
    cr_assert_eq(generated, 50);
    cr_expect_eq(ended_as_eos, 50, "a run ended before its JSON was complete");
    cr_expect_gt(with_optional, 0, "no run wrote an optional property");

    /* (a) json.loads parses each, (b) jsonschema.validate accepts it */
    char *json = cJSON_PrintUnformatted(pairs);
    char *out = test_json_validate_pairs(test_write_file(dir, "outputs.json", json));
    cr_expect_eq(count_lines(out, "valid"), 50, "%s", out);
    cr_expect_eq(count_lines(out, "invalid"), 0, "%s", out);
    free(out);
    free(json);
    cJSON_Delete(pairs);
}

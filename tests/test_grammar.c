/* GBNF grammars (src/grammar.h): the parser's errors and their positions, the recognizer's
 * accept/reject verdicts for each construct of the format, its byte-by-byte interface (what
 * the sampler's grammar stage will use), and quill grammar through the real binary.
 *
 * Every verdict below was written by hand and then cross-checked against llama.cpp's own
 * recognizer (its gbnf-validator example, built against libllama): all agree. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "grammar.h"
#include "test_util.h"

typedef struct {
    const char *text;
    bool accepted;
} Verdict;

typedef struct {
    const char *name;
    const char *grammar;
    Verdict verdicts[20];
    int n_verdicts;
} GrammarCase;

/* 20 texts for each construct of the format, each grammar built around that construct. */
static const GrammarCase CONSTRUCTS[] = {
    {"literal", "root ::= \"cat\"",
     {
      {"cat", true}, {"", false}, {"c", false}, {"ca", false}, {"cats", false}, {"Cat", false},
      {"cat ", false}, {" cat", false}, {"dog", false}, {"cta", false}, {"catcat", false},
      {"at", false}, {"cAt", false}, {"caT", false}, {"ct", false}, {"tac", false},
      {"c a t", false}, {"cat\n", false}, {"xcat", false}, {"ca\tt", false}
     }, 20},
    {"literals_in_sequence", "root ::= \"ab\" \"\" \"cd\"",
     {
      {"abcd", true}, {"ab", false}, {"abc", false}, {"abcde", false}, {"acbd", false},
      {"", false}, {"cd", false}, {"ab cd", false}, {"abdc", false}, {"bacd", false},
      {"abcdabcd", false}, {"Abcd", false}, {"abcD", false}, {"a", false}, {"d", false},
      {"abd", false}, {"acd", false}, {"abcc", false}, {"aabcd", false}, {"ab\ncd", false}
     }, 20},
    {"alternatives", "root ::= \"red\" | \"green\" | \"blue\" | \"\"",
     {
      {"red", true}, {"green", true}, {"blue", true}, {"", true}, {"re", false},
      {"redgreen", false}, {"Red", false}, {"gree", false}, {"blu", false}, {"bluee", false},
      {"yellow", false}, {"r", false}, {"g", false}, {"b", false}, {"greenblue", false},
      {" red", false}, {"red ", false}, {"|", false}, {"red|blue", false}, {"bluered", false}
     }, 20},
    {"alternatives_shared_prefix", "root ::= \"ab\" | \"abc\" | \"abcd\" | \"b\"",
     {
      {"ab", true}, {"abc", true}, {"abcd", true}, {"b", true}, {"a", false}, {"abcde", false},
      {"bc", false}, {"", false}, {"abd", false}, {"abb", false}, {"ba", false}, {"abcc", false},
      {"bb", false}, {"c", false}, {"d", false}, {"acd", false}, {"abab", false}, {"ab ", false},
      {"B", false}, {"abcdabcd", false}
     }, 20},
    {"groups", "root ::= \"x\" (\"a\" | \"b\") (\"c\" (\"d\" | \"e\") | \"f\") \"y\"",
     {
      {"xacdy", true}, {"xacey", true}, {"xafy", true}, {"xbcdy", true}, {"xbcey", true},
      {"xbfy", true}, {"xy", false}, {"xay", false}, {"xcdy", false}, {"xabcdy", false},
      {"xacy", false}, {"xacfy", false}, {"xacdey", false}, {"acdy", false}, {"xacd", false},
      {"xbf", false}, {"", false}, {"xafdy", false}, {"xcfy", false}, {"xbcdyy", false}
     }, 20},
    {"star", "root ::= \"<\" \"ab\"* \">\"",
     {
      {"<>", true}, {"<ab>", true}, {"<abab>", true}, {"<ababab>", true},
      {"<abababababababababababababababababababab>", true}, {"<a>", false}, {"<b>", false},
      {"<aba>", false}, {"<ba>", false}, {"<abb>", false}, {"", false}, {"<", false},
      {">", false}, {"<ab", false}, {"ab", false}, {"<<>", false}, {"<>>", false},
      {"<abab", false}, {"<abba>", false}, {"< ab>", false}
     }, 20},
    {"plus", "root ::= [0-9]+ (\",\" [0-9]+)*",
     {
      {"0", true}, {"42", true}, {"1,2", true}, {"10,200,3000", true},
      {"999999999999999999999999999999", true}, {"", false}, {",", false}, {"1,", false},
      {",1", false}, {"1,,2", false}, {"a", false}, {"1a", false}, {"1 2", false},
      {"1, 2", false}, {"12,", false}, {"-1", false}, {"1.5", false}, {"1,2,", false},
      {"x,1", false}, {"1;2", false}
     }, 20},
    {"question", "root ::= \"-\"? [0-9] (\".\" [0-9])? \"%\"?",
     {
      {"5", true}, {"-5", true}, {"5.0", true}, {"-5.5", true}, {"5%", true}, {"-5.5%", true},
      {"5.5%", true}, {"-5%", true}, {"", false}, {"-", false}, {"--5", false}, {"5.", false},
      {".5", false}, {"5.55", false}, {"55", false}, {"5%%", false}, {"%", false}, {"-.5", false},
      {"5-", false}, {"a", false}
     }, 20},
    {"exactly_m", "root ::= [a-f]{3} \"-\" (\"xy\"){2}",
     {
      {"abc-xyxy", true}, {"fff-xyxy", true}, {"ace-xyxy", true}, {"ab-xyxy", false},
      {"abcd-xyxy", false}, {"abc-xy", false}, {"abc-xyxyxy", false}, {"abc-", false},
      {"abg-xyxy", false}, {"ABC-xyxy", false}, {"", false}, {"abcxyxy", false},
      {"abc-xyx", false}, {"abc-yxyx", false}, {"a-xyxy", false}, {"-xyxy", false},
      {"abc--xyxy", false}, {"bcd-xyxy", true}, {"def-xyxy", true}, {"abc-xyxy ", false}
     }, 20},
    {"at_least_m", "root ::= \"a\"{2,} \"b\"{0,}",
     {
      {"aa", true}, {"aaa", true}, {"aaaaaaaaaaaaaaaaaaaaaaaaa", true}, {"aab", true},
      {"aabbb", true}, {"aaaab", true}, {"a", false}, {"", false}, {"ab", false}, {"b", false},
      {"aaba", false}, {"aabba", false}, {"ba", false}, {"bb", false}, {"aac", false},
      {"abb", false}, {"aa b", false}, {"Aa", false}, {"aaB", false}, {"aaaaaaaaaaaab", true}
     }, 20},
    {"m_to_n", "root ::= \"x\"{1,3} \"y\"{0,2}",
     {
      {"x", true}, {"xx", true}, {"xxx", true}, {"xy", true}, {"xyy", true}, {"xxxyy", true},
      {"xxyy", true}, {"xxy", true}, {"xxxx", false}, {"xyyy", false}, {"", false}, {"y", false},
      {"yy", false}, {"xyx", false}, {"xxxxy", false}, {"yx", false}, {"xxxyyy", false},
      {"xz", false}, {"x y", false}, {"X", false}
     }, 20},
    {"zero_to_n_nested", "root ::= (\"ab\"{0,2} \"c\"){1,2}",
     {
      {"c", true}, {"abc", true}, {"ababc", true}, {"cc", true}, {"abcc", true}, {"cabc", true},
      {"ababcababc", true}, {"abcabc", true}, {"", false}, {"ab", false}, {"abababc", false},
      {"ccc", false}, {"abcabcabc", false}, {"ac", false}, {"bc", false}, {"abab", false},
      {"cab", false}, {"abcab", false}, {"ababcabababc", false}, {"ca", false}
     }, 20},
    {"class_ranges", "root ::= [a-zA-Z_] [a-zA-Z0-9_]*",
     {
      {"x", true}, {"_", true}, {"Z", true}, {"abc", true}, {"a1", true}, {"_9_", true},
      {"HelloWorld42", true}, {"snake_case", true}, {"", false}, {"1", false}, {"9abc", false},
      {"a-b", false}, {"a b", false}, {"é", false}, {"a.b", false}, {"-", false}, {"a!", false},
      {"[", false}, {"`", false}, {"{", false}
     }, 20},
    {"class_negated", "root ::= \"\\\"\" [^\"\\\\\\n]* \"\\\"\"",
     {
      {"\"\"", true}, {"\"abc\"", true}, {"\"a b c\"", true}, {"\"é\"", true}, {"\"'\"", true},
      {"\"]\"", true}, {"\"^\"", true}, {"\"\t\"", true}, {"\"", false}, {"\"\"\"", false},
      {"\"a\"b\"", false}, {"\"\\\\\"", false}, {"\"a\\\\b\"", false}, {"\"\n\"", false},
      {"abc", false}, {"\"abc", false}, {"abc\"", false}, {"", false}, {"\"a\nb\"", false},
      {"\"x\" ", false}
     }, 20},
    {"class_edge_chars", "root ::= [-a] [a-] [\\]] [\\[] [\\\\] [a-c-]",
     {
      {"-a][\\a", true}, {"aa][\\b", true}, {"--][\\c", true}, {"a-][\\-", true},
      {"-a][\\-", true}, {"b-][\\a", false}, {"-b][\\a", false}, {"-a[]\\a", false},
      {"-a][/a", false}, {"-a][\\d", false}, {"", false}, {"-a][\\", false}, {"-a]", false},
      {"-a][\\aa", false}, {"-a]]\\a", false}, {"-a[[\\a", false}, {"-a][a\\", false},
      {"-a][\\^", false}, {"xa][\\a", false}, {"aa][\\c", true}
     }, 20},
    {"any_char", "root ::= \"<\" . . \">\"",
     {
      {"<ab>", true}, {"<  >", true}, {"<<>>", true}, {"<\n\t>", true}, {"<éü>", true},
      {"<日本>", true}, {"<😀x>", true}, {"<>>>", true}, {"<a>", false}, {"<abc>", false},
      {"<>", false}, {"", false}, {"ab", false}, {"<ab", false}, {"ab>", false}, {"<😀>", false},
      {"<日>", false}, {"<a\n>", true}, {"[ab]", false}, {"<ab>>", false}
     }, 20},
    {"escapes",
     "root ::= \"\\t\" \"\\n\" \"\\r\" \"\\\\\" \"\\\"\" [\\x41] [\\u00e9] \"\\x7e\" \"\\[\\]\"",
     {
      {"\t\n\r\\\"Aé~[]", true}, {"\t\n\r\\\"Ae~[]", false}, {"\t\n\r\\\"aé~[]", false},
      {"\t\n\n\\\"Aé~[]", false}, {" \n\r\\\"Aé~[]", false}, {"\t\n\r/\"Aé~[]", false},
      {"\t\n\r\\'Aé~[]", false}, {"\t\n\r\\\"Aé-[]", false}, {"\t\n\r\\\"Aé~[", false},
      {"\t\n\r\\\"Aé~[]]", false}, {"", false}, {"tnr", false}, {"\\t\\n\\r", false},
      {"\t\r\n\\\"Aé~[]", false}, {"\t\n\r\\\"AÉ~[]", false}, {"\t\n\r\\\"A\\u00e9~[]", false},
      {"\t\n\r\\\"\\x41é~[]", false}, {"\t\n\r\\\\\"Aé~[]", false}, {"\t\n\r\"Aé~[]", false},
      {"\t\n\r\\\"Aé~][", false}
     }, 20},
    {"rule_refs",
     "root ::= greeting \" \" name\n"
     "greeting ::= \"hi\" | \"hello\"\n"
     "name ::= [A-Z] [a-z]+",
     {
      {"hi Bob", true}, {"hello Alice", true}, {"hi Xy", true}, {"hello Zzzzzz", true},
      {"hi bob", false}, {"hi B", false}, {"hey Bob", false}, {"hiBob", false},
      {"hi  Bob", false}, {"hello", false}, {"Bob", false}, {"", false}, {"hello Bob1", false},
      {"hi BOB", false}, {"hellohi Bob", false}, {"hi Bob ", false}, {" hi Bob", false},
      {"hellp Bob", false}, {"hi Al", true}, {"he Bob", false}
     }, 20},
    {"nested_rules",
     "root ::= list\n"
     "list ::= \"[\" ws (item (ws \",\" ws item)*)? ws \"]\"\n"
     "item ::= [0-9]+ | list\n"
     "ws ::= [ \\t\\n]*",
     {
      {"[]", true}, {"[1]", true}, {"[1,2]", true}, {"[ 1 , 2 ]", true}, {"[[]]", true},
      {"[[1],[2,[3]]]", true}, {"[\n1,\n[2]\n]", true}, {"[[[[[]]]]]", true}, {"[", false},
      {"]", false}, {"[1,]", false}, {"[,1]", false}, {"[[]", false}, {"[]]", false},
      {"[1 2]", false}, {"", false}, {"[a]", false}, {"[1],[2]", false}, {"[[1],]", false},
      {"1", false}
     }, 20},
    {"right_recursion",
     "root ::= \"(\" inner \")\"\n"
     "inner ::= \"x\" inner | \"y\"",
     {
      {"(y)", true}, {"(xy)", true}, {"(xxxxy)", true},
      {"(xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxy)", true}, {"()", false},
      {"(x)", false}, {"(yx)", false}, {"(xyx)", false}, {"(yy)", false}, {"", false},
      {"y", false}, {"xy", false}, {"(xxy", false}, {"xy)", false}, {"((y))", false},
      {"(xxxx)", false}, {"(x y)", false}, {"( y)", false}, {"(Y)", false}, {"(xyy)", false}
     }, 20},
    {"utf8", "root ::= \"café \" [α-ω]+ \" \" [😀-😏] \"日本\"?",
     {
      {"café αβγ 😀", true}, {"café ω 😏日本", true}, {"café λ 😅", true}, {"cafe αβγ 😀", false},
      {"café abc 😀", false}, {"café αβγ 😐", false}, {"café  😀", false}, {"café αβγ 😀日", false},
      {"café αβγ 😀本", false}, {"café Ω 😀", false}, {"", false}, {"café", false},
      {"café αβγ", false}, {"café αβγ 😀 ", false}, {"café ΑΒΓ 😀", false}, {"café αβγ 🙂", false},
      {"café αβγ 😀日本日本", false}, {"caf αβγ 😀", false}, {"café ω 😀日本", true}, {"café α 😏", true}
     }, 20},
};
enum { N_CONSTRUCTS = sizeof CONSTRUCTS / sizeof *CONSTRUCTS };

/* Grammars written for these tests in the style of llama.cpp's examples (the .gbnf files in
 * its grammars/: JSON, arithmetic, chess moves, a list), with comments and rules over several
 * lines. */
static const GrammarCase EXAMPLES[] = {
    {"json",
     "# JSON values (RFC 8259), written for these tests\n"
     "root   ::= ws value ws\n"
     "value  ::= object | array | string | number | \"true\" | \"false\" | \"null\"\n"
     "object ::= \"{\" ws ( member ( ws \",\" ws member )* )? ws \"}\"\n"
     "member ::= string ws \":\" ws value\n"
     "array  ::= \"[\" ws ( value ( ws \",\" ws value )* )? ws \"]\"\n"
     "string ::= \"\\\"\" ( [^\"\\\\\\x00-\\x1f] | \"\\\\\" ( [\"\\\\/bfnrt] | \"u\" [0-9a-fA-F]{4} ) )* \"\\\"\"\n"
     "number ::= \"-\"? ( \"0\" | [1-9] [0-9]* ) ( \".\" [0-9]+ )? ( [eE] [-+]? [0-9]+ )?\n"
     "ws     ::= [ \\t\\n\\r]*",
     {
      {"{\"a\": [1, -2.5e3, \"x\\n\\u00e9\", true, null]}", true}, {"[]", true}, {" {} ", true},
      {"\"é\"", true}, {"0", true}, {"{\"a\": }", false}, {"[1,]", false}, {"01", false},
      {"\"\\x\"", false}, {"{\"a\" 1}", false}, {"\"tab\there\"", false}, {"[1 2]", false},
      {"nul", false}, {"-", false}, {"1.", false}
     }, 15},
    {"arithmetic",
     "root ::= (expr \"=\" ws term \"\\n\")+\n"
     "expr ::= term ([-+*/] term)*\n"
     "term ::= ident | num | \"(\" ws expr \")\" ws\n"
     "ident ::= [a-z] [a-z0-9_]* ws\n"
     "num ::= [0-9]+ ws\n"
     "ws ::= [ \\t\\n]*",
     {
      {"1+2=3\n", true}, {"x = (y*2) \n", true}, {"a=b\nc=d\n", true}, {"1+2=3", false},
      {"=3\n", false}, {"(1=2\n", false}, {"1++2=3\n", false}, {"A=1\n", false}
     }, 8},
    {"chess",
     "root ::= turn (\" \" turn)*\n"
     "turn ::= [1-9] [0-9]? \". \" move (\" \" move)?\n"
     "move ::= ( piece? [a-h]? \"x\"? [a-h] [1-8] | \"O-O\" \"-O\"? ) [+#]?\n"
     "piece ::= [KQRBN]",
     {
      {"1. e4 e5 2. Nf3 Nc6", true}, {"1. O-O O-O-O", true}, {"12. Qxh7#", true},
      {"1. e9", false}, {"1. Zf3", false}, {"1.e4", false}, {"1. e4  e5", false},
      {"1. O-O-O-O", false}
     }, 8},
    {"list",
     "root ::= item+\n"
     "item ::= \"- \" [^\\r\\n]+ \"\\n\"  # one line per item",
     {
      {"- milk\n- eggs\n", true}, {"- a\n", true}, {"", false}, {"- \n", false},
      {"milk\n", false}, {"- milk", false}, {"- a\n\n", false}, {"-  b\n", true}
     }, 8},
};
enum { N_EXAMPLES = sizeof EXAMPLES / sizeof *EXAMPLES };

static void parse_or_fail(const char *text, Grammar *g)
{
    Error err = {{0}};
    cr_assert_eq(grammar_parse(text, strlen(text), g, &err), 0, "grammar:\n%s\nerror: %s", text,
                 err.msg);
}

/* Checks every verdict of a case; returns how many were compared. */
static int check_case(const GrammarCase *c)
{
    Grammar g;
    parse_or_fail(c->grammar, &g);
    for (int i = 0; i < c->n_verdicts; i++) {
        bool accepted;
        Error err = {{0}};
        const Verdict *v = &c->verdicts[i];
        cr_assert_eq(grammar_accepts(&g, v->text, strlen(v->text), &accepted, &err), 0, "%s",
                     err.msg);
        cr_expect_eq(accepted, v->accepted, "%s: \"%s\" should be %s", c->name, v->text,
                     v->accepted ? "accepted" : "rejected");
    }
    grammar_free(&g);
    return c->n_verdicts;
}

static void check_construct(const char *name)
{
    for (int i = 0; i < N_CONSTRUCTS; i++) {
        if (strcmp(CONSTRUCTS[i].name, name) == 0) {
            cr_assert_eq(check_case(&CONSTRUCTS[i]), 20, "%s: 20 verdicts expected", name);
            return;
        }
    }
    cr_assert_fail("no case named %s", name);
}

#define CONSTRUCT_TEST(name)                                                                    \
    Test(grammar, name) { check_construct(#name); }

CONSTRUCT_TEST(literal)
CONSTRUCT_TEST(literals_in_sequence)
CONSTRUCT_TEST(alternatives)
CONSTRUCT_TEST(alternatives_shared_prefix)
CONSTRUCT_TEST(groups)
CONSTRUCT_TEST(star)
CONSTRUCT_TEST(plus)
CONSTRUCT_TEST(question)
CONSTRUCT_TEST(exactly_m)
CONSTRUCT_TEST(at_least_m)
CONSTRUCT_TEST(m_to_n)
CONSTRUCT_TEST(zero_to_n_nested)
CONSTRUCT_TEST(class_ranges)
CONSTRUCT_TEST(class_negated)
CONSTRUCT_TEST(class_edge_chars)
CONSTRUCT_TEST(any_char)
CONSTRUCT_TEST(escapes)
CONSTRUCT_TEST(rule_refs)
CONSTRUCT_TEST(nested_rules)
CONSTRUCT_TEST(right_recursion)
CONSTRUCT_TEST(utf8)

Test(grammar, every_construct_case_has_its_test)
{
    cr_assert_eq(N_CONSTRUCTS, 21, "a case was added or removed: give it a CONSTRUCT_TEST");
}

Test(grammar, example_style_grammars)
{
    int compared = 0;
    for (int i = 0; i < N_EXAMPLES; i++)
        compared += check_case(&EXAMPLES[i]);
    cr_assert_eq(compared, 39);
}

typedef struct {
    const char *grammar;
    const char *message; /* the whole of err.msg */
} BadGrammar;

/* Grammars that do not build, each with its one-line message: where (line, column: the
 * column counts characters from 1) and what. */
static const BadGrammar BAD[] = {
    {"root ::= \"abc", "line 1, column 14: unexpected end of the grammar"},
    {"root ::= (\"a\" | \"b\"", "line 1, column 20: expecting ')'"},
    {"root ::= [a-z", "line 1, column 14: unexpected end of the grammar"},
    {"root = \"a\"", "line 1, column 6: expecting ::="},
    {"root ::= * \"a\"", "line 1, column 10: a repetition (* + ? {}) needs an item before it"},
    {"root ::= \"a\"**", "line 1, column 14: a repetition (* + ? {}) needs an item before it"},
    {"root ::= \"a\"{2,1}", "line 1, column 13: repetition {m,n} with n below m"},
    {"root ::= \"a\"{x}", "line 1, column 14: expecting a number"},
    {"root ::= \"a\"{3", "line 1, column 15: expecting '}' (or ',') in a repetition {m,n}"},
    {"root ::= \"a\"{20000}", "line 1, column 14: repetition count above 10000"},
    {"root ::= \"\\q\"", "line 1, column 11: unknown escape"},
    {"root ::= \"\\x4\"", "line 1, column 14: expecting 2 hex digits after \\x"},
    {"root ::= [\\u12]", "line 1, column 15: expecting 4 hex digits after \\u"},
    {"root ::= \"a\" )", "line 1, column 14: unexpected ')'"},
    {"root ::= [z-a]", "line 1, column 10: a range in this class ends below where it starts"},
    {"root ::= []", "line 1, column 10: an empty character class matches nothing"},
    {"\"abc\" ::= root", "line 1, column 1: expecting a rule name"},
    {"root ::= \"a\"\n  | \"b\"", "line 2, column 3: expecting a rule name"},
    {"root ::= \"a\"\n\n  # a comment\nitem ::= \"b\" \"c\" @",
     "line 4, column 18: expecting the end of the line"},
    {"root ::= \"é\" \"\xff\"", "line 1, column 15: invalid UTF-8"},
    {"root ::= \"a\"\nroot ::= \"b\"", "line 2, column 1: rule 'root' is defined twice"},
    {"root ::= item\n", "line 1, column 10: rule 'item' is used but never defined"},
    {"root ::= \"x\" (digits | letters)\ndigits ::= [0-9]+",
     "line 1, column 24: rule 'letters' is used but never defined"},
    {"item ::= \"x\"", "the grammar has no rule named 'root'"},
    {"root ::= a\na ::= a \"x\" | \"y\"",
     "rule 'a' is left-recursive: it can come back to itself before reading a character"},
    /* through a rule that can match nothing: llama.cpp's own check misses this one */
    {"root ::= opt root \"a\" | \"b\"\nopt ::= \"c\"?",
     "rule 'root' is left-recursive: it can come back to itself before reading a character"},
    {"root ::= (\"a\" | root) \"b\"",
     "rule 'root' is left-recursive: it can come back to itself before reading a character"},
};
enum { N_BAD = sizeof BAD / sizeof *BAD };

Test(grammar, invalid_grammars_name_their_position)
{
    int compared = 0;
    for (int i = 0; i < N_BAD; i++) {
        Grammar g;
        Error err = {{0}};
        int status = grammar_parse(BAD[i].grammar, strlen(BAD[i].grammar), &g, &err);
        cr_expect_eq(status, -1, "grammar built:\n%s", BAD[i].grammar);
        cr_expect_str_eq(err.msg, BAD[i].message, "grammar:\n%s", BAD[i].grammar);
        compared++;
    }
    cr_assert_eq(compared, 27);
}

/* Groups are parsed by recursion: a grammar of deeply nested parentheses is refused, not a
 * stack overflow; 200 levels still build. */
Test(grammar, nesting_depth_is_bounded)
{
    char text[1024];
    for (int depth = 200; depth <= 201; depth++) {
        int n = snprintf(text, sizeof text, "root ::= ");
        for (int i = 0; i < depth; i++)
            text[n++] = '(';
        text[n++] = '.';
        for (int i = 0; i < depth; i++)
            text[n++] = ')';
        text[n] = '\0';
        Grammar g;
        Error err = {{0}};
        int status = grammar_parse(text, (size_t)n, &g, &err);
        if (depth == 200) {
            cr_assert_eq(status, 0, "%s", err.msg);
            bool accepted;
            cr_assert_eq(grammar_accepts(&g, "z", 1, &accepted, &err), 0, "%s", err.msg);
            cr_expect(accepted);
            grammar_free(&g);
        } else {
            cr_expect_eq(status, -1);
            cr_expect_str_eq(err.msg, "line 1, column 210: groups nested more than 200 deep");
        }
    }
}

/* A parse stack grows with each unfinished rule under the one being read: brackets nested 1
 * to 100 deep (the recognizer builds stacks of up to 32 positions in room of its own, longer
 * ones in allocated memory) are accepted when balanced and refused with one missing. */
Test(grammar, deep_stacks_read_as_shallow_ones)
{
    Grammar g;
    parse_or_fail("root ::= \"[\" root \"]\" | \"1\"", &g);
    char text[256];
    int compared = 0;
    for (int depth = 1; depth <= 100; depth++, compared++) {
        memset(text, '[', (size_t)depth);
        text[depth] = '1';
        memset(text + depth + 1, ']', (size_t)depth);
        Error err;
        bool balanced, short_one;
        cr_assert_eq(grammar_accepts(&g, text, (size_t)(2 * depth + 1), &balanced, &err), 0);
        cr_assert_eq(grammar_accepts(&g, text, (size_t)(2 * depth), &short_one, &err), 0);
        cr_expect(balanced, "%d deep: refused", depth);
        cr_expect_not(short_one, "%d deep with one ']' missing: accepted", depth);
    }
    cr_assert_eq(compared, 100);
    grammar_free(&g);
}

Test(grammar, valid_layouts_parse)
{
    /* comments, blank lines, \r\n line ends, a rule's alternatives after "|" on new lines,
     * a group over several lines, an empty alternative, and no newline at the end */
    static const char *const VALID[] = {
        "root ::= \"a\"",
        "# only a comment before\n\nroot ::= \"a\" # and after\n\n",
        "root ::= \"a\"\r\nb ::= \"b\"\r\n",
        "root ::= \"a\" |\n    \"b\" |\n    \"c\"",
        "root ::= (\n  \"a\"\n  | \"b\"\n)",
        "root ::= \"a\" | ",
        "root ::=\n  x\nx ::= [a]{0,0} \"b\"",
        "root ::= [a-]{2} [\\]] [^\\x00-\\x1F\\u007F]",
    };
    int compared = 0;
    for (size_t i = 0; i < sizeof VALID / sizeof *VALID; i++) {
        Grammar g;
        parse_or_fail(VALID[i], &g);
        grammar_free(&g);
        compared++;
    }
    cr_assert_eq(compared, 8);
}

/* Parses the grammar and starts a matcher at the beginning of the text. */
static void matcher_start(const char *grammar, Grammar *g, GrammarMatcher *m)
{
    Error err = {{0}};
    parse_or_fail(grammar, g);
    cr_assert_eq(grammar_matcher_init(m, g, &err), 0, "%s", err.msg);
}

static void feed_ok(GrammarMatcher *m, const char *bytes, bool want)
{
    bool allowed;
    Error err = {{0}};
    cr_assert_eq(grammar_matcher_feed(m, (const unsigned char *)bytes, strlen(bytes), &allowed, &err),
                 0, "%s", err.msg);
    cr_assert_eq(allowed, want, "feeding \"%s\"", bytes);
}

/* What the sampler will ask: pieces of any length, split anywhere, even inside a character;
 * a piece that leaves the grammar changes nothing. */
Test(grammar, matcher_takes_pieces_and_keeps_state_on_rejection)
{
    Grammar g;
    GrammarMatcher m;
    matcher_start("root ::= \"{\" [α-ω]+ \"}\"", &g, &m);
    cr_expect(grammar_matcher_can_continue(&m));
    feed_ok(&m, "x", false);                 /* rejected: m is still at the start */
    feed_ok(&m, "{\xce", true);              /* '{' and the first byte of α (CE B1) */
    cr_expect_not(grammar_matcher_is_complete(&m));
    feed_ok(&m, "\xb1\xce\xb2", true);       /* the rest of α, all of β */
    feed_ok(&m, "\xc3", false);              /* C3 starts U+00C0..U+00FF: no Greek there */
    feed_ok(&m, "\xce\x91", false);          /* Α (U+0391), a capital: outside [α-ω] */
    feed_ok(&m, "\xff", false);              /* never UTF-8 */
    bool allowed;
    Error err = {{0}};
    cr_assert_eq(grammar_matcher_allows(&m, (const unsigned char *)"}", 1, &allowed, &err), 0);
    cr_expect(allowed);
    cr_expect_not(grammar_matcher_is_complete(&m), "allows changed the matcher");
    feed_ok(&m, "}", true);
    cr_expect(grammar_matcher_is_complete(&m));
    cr_expect_not(grammar_matcher_can_continue(&m), "nothing can follow the closing brace");
    feed_ok(&m, "}", false);
    grammar_matcher_free(&m);
    grammar_free(&g);
}

Test(grammar, complete_yet_able_to_continue)
{
    Grammar g;
    GrammarMatcher m;
    matcher_start("root ::= [0-9]+", &g, &m);
    cr_expect_not(grammar_matcher_is_complete(&m));
    feed_ok(&m, "12", true);
    cr_expect(grammar_matcher_is_complete(&m));
    cr_expect(grammar_matcher_can_continue(&m));
    grammar_matcher_free(&m);
    grammar_free(&g);
}

/* An ambiguous grammar whose ways through would double at each character without the set
 * keeping one copy of equal stacks: 200 characters stay quick and few. */
Test(grammar, ambiguity_does_not_multiply_stacks)
{
    Grammar g;
    GrammarMatcher m;
    matcher_start("root ::= (\"a\" | \"a\" | x)*\nx ::= \"a\" | \"a\"", &g, &m);
    for (int i = 0; i < 200; i++)
        feed_ok(&m, "a", true);
    cr_expect(grammar_matcher_is_complete(&m));
    cr_expect_leq(m.stacks.n, 8, "%zu stacks after 200 characters", m.stacks.n);
    grammar_matcher_free(&m);
    grammar_free(&g);
}

/* ---------------------------------------------------------------- the command */

Test(grammar_cli, check_prints_one_verdict_per_text_in_order)
{
    char *out, *messages;
    int status;
    quill_stdout(&out, &messages, &status,
                 "grammar --grammar 'root ::= \"-\"? [0-9]+' --check 12 x -3 --check -- ''");
    cr_assert_eq(status, 0, "%s", messages);
    cr_expect_str_eq(out, "accept\nreject\naccept\nreject\nreject\nreject\n");
    free(out);
    free(messages);
}

Test(grammar_cli, reads_a_grammar_file)
{
    const char *path = test_write_file(test_make_tmpdir(), "list.gbnf",
                                       "# a list of words\nroot ::= word (\", \" word)*\n"
                                       "word ::= [a-z]+\n");
    char *out, *messages;
    int status;
    quill_stdout(&out, &messages, &status, "grammar %s --check 'red, green' 'red,green' red", path);
    cr_assert_eq(status, 0, "%s", messages);
    cr_expect_str_eq(out, "accept\nreject\naccept\n");
    free(out);
    free(messages);
    quill_stdout(&out, &messages, &status, "grammar %s", path);
    cr_expect_eq(status, 0, "%s", messages);
    cr_expect_str_eq(out, "ok\n");
    free(out);
    free(messages);
}

Test(grammar_cli, bad_grammars_exit_with_their_position)
{
    expect_clean_error("--grammar: line 2, column 11: rule 'b' is used but never defined",
                       "grammar --grammar \"$(printf 'root ::= a\\na ::= \"x\" b')\" --check x");
    expect_clean_error("missing.gbnf", "grammar missing.gbnf --check x");
    expect_clean_error("give the grammar one way", "grammar --check x");
    const char *dir = test_make_tmpdir();
    char path[512];
    snprintf(path, sizeof path, "%s/bad.gbnf", dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs("root ::= (\"a\"\n", f);
    fclose(f);
    char needle[600];
    snprintf(needle, sizeof needle, "%s: line 2, column 1: expecting ')'", path);
    expect_clean_error(needle, "grammar %s --check a", path);
}

/* A grammar whose ways through multiply with every character (a recursion that may or may
 * not start at each character, inside a repetition) used to make each step cost more than
 * the last: 80 characters ran for minutes. Past GRAMMAR_MAX_STACKS ways the text is an error
 * that says so, at once; a text that stays within the limit is still judged. */
Test(grammar, a_grammar_too_ambiguous_for_a_text_is_a_quick_error, .timeout = 10)
{
    Grammar g;
    Error err;
    const char *text = "root ::= (\"x\" | . root \"x\" | .)+";
    cr_assert_eq(grammar_parse(text, strlen(text), &g, &err), 0, "%s", err.msg);
    char long_text[81];
    for (int i = 0; i < 80; i++)
        long_text[i] = i % 2 ? 'b' : 'a';
    long_text[80] = '\0';
    bool accepted = false;
    cr_expect_eq(grammar_accepts(&g, long_text, 80, &accepted, &err), -1);
    cr_expect_str_eq(err.msg, "the grammar is too ambiguous here: more than 1024 ways to read "
                              "the text so far");
    cr_expect_eq(grammar_accepts(&g, "axx", 3, &accepted, &err), 0, "%s", err.msg);
    cr_expect(accepted, "\"axx\": a, then x, then x");
    grammar_free(&g);
}


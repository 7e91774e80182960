/* Tokenizer tests: llama.cpp's own test vectors for the Llama 2, GPT-2, Llama 3 and Qwen3
 * vocabularies, round trips over awkward text and random bytes, hand-computed trainer and
 * merge results, special tokens, and GGUF storage. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fileio.h"
#include "gguf.h"
#include "test_util.h"
#include "tokenizer.h"

#define SPM_VOCAB "vocab/ggml-vocab-llama-spm.gguf"
#define GPT2_VOCAB "vocab/ggml-vocab-gpt-2.gguf"
#define LLAMA3_VOCAB "vocab/ggml-vocab-llama3.gguf"
#define QWEN3_VOCAB "vocab/ggml-vocab-qwen3.gguf"

/* ---- Helpers ---- */

/* Printable form of a byte string for failure messages: ASCII as is, the rest as \xAB. */
static const char *show_bytes(const char *s, size_t n)
{
    static char buf[4][1024];
    static int which;
    char *out = buf[which++ % 4];
    size_t k = 0;
    for (size_t i = 0; i < n && k + 8 < sizeof buf[0]; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f && c != '\\')
            out[k++] = (char)c;
        else
            k += (size_t)snprintf(out + k, sizeof buf[0] - k, "\\x%02X", c);
    }
    out[k] = '\0';
    return out;
}

static const char *show_ids(const int *ids, size_t n)
{
    static char buf[2][8192];
    static int which;
    char *out = buf[which++ % 2];
    size_t k = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n && k + 16 < sizeof buf[0]; i++)
        k += (size_t)snprintf(out + k, sizeof buf[0] - k, "%s%d", i ? " " : "", ids[i]);
    return out;
}

static bool same_ids(const int *a, size_t n_a, const int *b, size_t n_b)
{
    return n_a == n_b && (n_a == 0 || memcmp(a, b, n_a * sizeof *a) == 0);
}

static void load_vocab(Tokenizer *t, const char *path)
{
    GgufFile *f;
    Error err;
    cr_assert_eq(gguf_open(&f, path, &err), 0, "%s", err.msg);
    int rc = tokenizer_from_gguf(t, f, &err);
    gguf_close(f);
    cr_assert_eq(rc, 0, "%s: %s", path, err.msg);
}

static void encode_ok(const Tokenizer *t, const char *text, size_t len, bool bos, int **ids,
                      size_t *n)
{
    Error err;
    cr_assert_eq(tokenizer_encode(t, text, len, bos, ids, n, &err), 0, "encode '%s': %s",
                 show_bytes(text, len), err.msg);
}

static void assert_round_trip(const Tokenizer *t, const char *text, size_t len, bool bos,
                              const char *who)
{
    int *ids;
    size_t n;
    char *back;
    size_t back_len;
    Error err;
    encode_ok(t, text, len, bos, &ids, &n);
    cr_assert_eq(tokenizer_decode(t, ids, n, &back, &back_len, &err), 0, "%s", err.msg);
    cr_assert(back_len == len && memcmp(back, text, len) == 0,
              "%s: decode(encode(s)) != s\n  s:    '%s'\n  back: '%s'\n  ids:  %s", who,
              show_bytes(text, len), show_bytes(back, back_len), show_ids(ids, n));
    free(ids);
    free(back);
}

static void assert_encodes_to(const Tokenizer *t, const char *text, const int *want,
                              size_t n_want)
{
    int *ids;
    size_t n;
    encode_ok(t, text, strlen(text), false, &ids, &n);
    cr_assert(same_ids(ids, n, want, n_want),
              "encode '%s':\n  expected %s\n  got      %s", text, show_ids(want, n_want),
              show_ids(ids, n));
    free(ids);
}

/* A small corpus for the trainers: repeated words, punctuation, newlines, non-ASCII. */
static const char TRAIN_TEXT[] =
    "the cat sat on the mat. the cat ate the rat.\n"
    "a rat sat on a cat? no, the rat ran, the cat sat.\n"
    "caf\xc3\xa9 cr\xc3\xa8me br\xc3\xbbl\xc3\xa9" "e, \xc2\xbd price, the end.\n";

static void train_char(Tokenizer *t)
{
    Error err;
    *t = (Tokenizer){0};
    cr_assert_eq(tokenizer_train_char(t, TRAIN_TEXT, strlen(TRAIN_TEXT), &err), 0, "%s", err.msg);
}

static void train_bpe(Tokenizer *t, const char *text, int vocab_size)
{
    Error err;
    *t = (Tokenizer){0};
    cr_assert_eq(tokenizer_train_bpe(t, text, strlen(text), vocab_size, &err), 0, "%s", err.msg);
}

/* ---- (a) llama.cpp's test vectors for the Llama 2 vocabulary ---- */

typedef struct {
    const char *text;
    size_t len;
} Case;

/* Splits the .inp file into cases. Each case ends with "\n__ggml_vocab_test__\n", the
 * last one included, so what follows the last separator is not a case. */
static int split_cases(char *inp, size_t len, Case *cases, int max)
{
    static const char sep[] = "\n__ggml_vocab_test__\n";
    const size_t sep_len = sizeof sep - 1;
    int n = 0;
    size_t start = 0;
    for (size_t i = 0; i + sep_len <= len; i++) {
        if (memcmp(inp + i, sep, sep_len) != 0)
            continue;
        cr_assert_lt(n, max, "more than %d cases", max);
        cases[n++] = (Case){inp + start, i - start};
        start = i + sep_len;
        i = start - 1;
    }
    return n;
}

/* Parses one line of the .out file: ids separated by spaces. */
static size_t parse_ids(const char *line, const char *end, int *ids, size_t max)
{
    size_t n = 0;
    while (line < end) {
        char *next;
        long v = strtol(line, &next, 10);
        if (next == line)
            break;
        cr_assert_lt(n, max);
        ids[n++] = (int)v;
        line = next;
    }
    return n;
}

/* Encodes every case of the vocabulary's .inp file and compares it with the ids llama.cpp
 * wrote into its .out file (no bos, special-token parsing off); with round_trip, also
 * checks decode(encode(s)) == s. Returns the number of cases compared. */
static int compare_with_llama_cpp(const Tokenizer *t, const char *vocab_path, bool round_trip)
{
    char path[4200];
    char *inp, *out;
    size_t inp_len, out_len;
    Error err;
    /* file_read_all reads bytes: the CRLF case keeps its carriage returns. */
    snprintf(path, sizeof path, "%s.inp", vocab_path);
    cr_assert_eq(file_read_all(path, &inp, &inp_len, &err), 0, "%s", err.msg);
    snprintf(path, sizeof path, "%s.out", vocab_path);
    cr_assert_eq(file_read_all(path, &out, &out_len, &err), 0, "%s", err.msg);

    Case cases[128];
    int n_cases = split_cases(inp, inp_len, cases, 128);
    const char *line = out;
    for (int c = 0; c < n_cases; c++) {
        const char *eol = memchr(line, '\n', (size_t)(out + out_len - line));
        cr_assert_not_null(eol, "%s has fewer lines than cases", path);
        int want[1024];
        size_t n_want = parse_ids(line, eol, want, 1024);
        int *ids;
        size_t n;
        encode_ok(t, cases[c].text, cases[c].len, false, &ids, &n);
        cr_assert(same_ids(ids, n, want, n_want),
                  "%s case %d '%s':\n  llama.cpp %s\n  quill     %s", vocab_path, c,
                  show_bytes(cases[c].text, cases[c].len), show_ids(want, n_want),
                  show_ids(ids, n));
        free(ids);
        if (round_trip)
            assert_round_trip(t, cases[c].text, cases[c].len, false, vocab_path);
        line = eol + 1;
    }
    cr_assert_eq(line, out + out_len, "%s has more lines than cases", path);
    free(inp);
    free(out);
    return n_cases;
}

Test(tokenizer, llama_spm_vectors)
{
    SHARED_FILE_OR_SKIP(shared_vocab, SPM_VOCAB);
    char vocab_path[4096];
    snprintf(vocab_path, sizeof vocab_path, "%s", shared_vocab);
    Tokenizer t;
    load_vocab(&t, vocab_path);
    cr_assert_eq(t.kind, TOKENIZER_SPM);
    cr_assert_eq(t.n_vocab, 32000);
    cr_assert(t.bos_id == 1 && t.eos_id == 2 && t.unk_id == 0);
    cr_assert(t.add_bos && t.add_space_prefix);
    cr_assert_null(tokenizer_pre_name(&t));
    int n_cases = compare_with_llama_cpp(&t, vocab_path, false);
    cr_assert_eq(n_cases, 46, "expected 46 cases, compared %d", n_cases);
    tokenizer_free(&t);
}

/* ---- Byte-level BPE against llama.cpp ---- */

/* Loads a shared vocabulary and compares all its cases (and their round trips). */
static void assert_bpe_vectors(const char *shared_vocab, int expected_cases)
{
    char vocab_path[4096];
    snprintf(vocab_path, sizeof vocab_path, "%s", shared_vocab);
    Tokenizer t;
    load_vocab(&t, vocab_path);
    cr_assert_eq(t.kind, TOKENIZER_BPE);
    int n_cases = compare_with_llama_cpp(&t, vocab_path, true);
    cr_assert_eq(n_cases, expected_cases, "%s: expected %d cases, compared %d", vocab_path,
                 expected_cases, n_cases);
    tokenizer_free(&t);
}

Test(tokenizer, gpt2_vectors)
{
    SHARED_FILE_OR_SKIP(vocab_path, GPT2_VOCAB);
    assert_bpe_vectors(vocab_path, 46);
}

Test(tokenizer, llama3_vectors, .timeout = 60)
{
    SHARED_FILE_OR_SKIP(vocab_path, LLAMA3_VOCAB);
    assert_bpe_vectors(vocab_path, 61);
}

Test(tokenizer, qwen3_vectors, .timeout = 60)
{
    SHARED_FILE_OR_SKIP(vocab_path, QWEN3_VOCAB);
    assert_bpe_vectors(vocab_path, 61);
}

Test(tokenizer, llama_spm_basics)
{
    SHARED_FILE_OR_SKIP(vocab_path, SPM_VOCAB);
    Tokenizer t;
    load_vocab(&t, vocab_path);
    /* Empty text has no tokens (not a lone "▁"); with bos it is just <s>. */
    int *ids;
    size_t n;
    encode_ok(&t, "", 0, false, &ids, &n);
    cr_assert_eq(n, 0);
    free(ids);
    encode_ok(&t, "", 0, true, &ids, &n);
    cr_assert(n == 1 && ids[0] == 1);
    free(ids);
    /* Control text is plain text: "<s>" is not the bos token. */
    encode_ok(&t, "<s>", 3, false, &ids, &n);
    for (size_t i = 0; i < n; i++)
        cr_assert_neq(ids[i], 1, "'<s>' encoded to the bos token: %s", show_ids(ids, n));
    free(ids);

    /* A text continued mid-way gets no space prefix: " world" appended after "Hello"
     * encodes to the same token as the tail of "Hello world". */
    int *whole, *tail;
    size_t n_whole, n_tail;
    encode_ok(&t, "Hello world", 11, false, &whole, &n_whole);
    Error err;
    cr_assert_eq(tokenizer_encode_with(&t, " world", 6, (EncodeOptions){.mid_text = true}, &tail,
                                       &n_tail, &err), 0, "%s", err.msg);
    cr_assert(n_whole == 2 && n_tail == 1 && tail[0] == whole[1], "%s vs %s",
              show_ids(whole, n_whole), show_ids(tail, n_tail));
    free(whole);
    free(tail);

    char buf[16];
    cr_assert_eq(tokenizer_token_bytes(&t, 15043, buf, sizeof buf), 6); /* "▁Hello" */
    cr_assert(memcmp(buf, " Hello", 6) == 0);
    cr_assert_eq(tokenizer_token_bytes(&t, 13, buf, sizeof buf), 1); /* <0x0A> */
    cr_assert_eq(buf[0], '\n');
    cr_assert_eq(tokenizer_token_bytes(&t, 1, buf, sizeof buf), 0);  /* <s> */
    cr_assert_eq(tokenizer_token_bytes(&t, 0, buf, sizeof buf), 0);  /* <unk> */
    cr_assert_eq(tokenizer_token_bytes(&t, 15043, buf, 2), 6, "full length when clipped");
    cr_assert(memcmp(buf, " H", 2) == 0);
    cr_assert_eq(tokenizer_token_bytes(&t, 15043, NULL, 0), 6);
    cr_assert_eq(tokenizer_lookup(&t, "\xe2\x96\x81Hello", 8), 15043);
    cr_assert_eq(tokenizer_lookup(&t, "no such piece", 13), -1);
    tokenizer_free(&t);
}

/* The same vocabulary inside a real model file, against llama.cpp's tokenization of the
 * prompt in its reference output (bos included). */
Test(tokenizer, stories260k_prompt)
{
    SHARED_FILE_OR_SKIP(shared_ref, "models/stories260K.ref2.json");
    char *json;
    size_t len;
    Error err;
    cr_assert_eq(file_read_all(shared_ref, &json, &len, &err), 0, "%s", err.msg);
    static const char prompt_key[] = "\"prompt\": \"", tokens_key[] = "\"prompt_tokens\": [";
    const char *prompt = strstr(json, prompt_key), *tokens = strstr(json, tokens_key);
    cr_assert(prompt && tokens, "reference file without prompt or prompt_tokens");
    prompt += strlen(prompt_key);
    const char *prompt_end = strchr(prompt, '"');
    cr_assert(prompt_end && !memchr(prompt, '\\', (size_t)(prompt_end - prompt)),
              "the prompt has JSON escapes; this test reads plain strings only");
    int want[256];
    size_t n_want = 0;
    for (const char *p = tokens + strlen(tokens_key); *p != ']';) {
        char *next;
        want[n_want++] = (int)strtol(p, &next, 10);
        p = next + strspn(next, ", \n");
        cr_assert_lt(n_want, 256);
    }

    SHARED_FILE_OR_SKIP(model_path, "models/stories260K.gguf");
    Tokenizer t;
    load_vocab(&t, model_path);
    cr_assert_eq(t.n_vocab, 512);
    int *ids;
    size_t n;
    encode_ok(&t, prompt, (size_t)(prompt_end - prompt), t.add_bos, &ids, &n);
    cr_assert(same_ids(ids, n, want, n_want),
              "llama.cpp %s\nquill     %s", show_ids(want, n_want), show_ids(ids, n));
    assert_round_trip(&t, prompt, (size_t)(prompt_end - prompt), true, "stories260K");
    free(ids);
    free(json);
    tokenizer_free(&t);
}

/* ---- (b) Round trips ---- */

typedef struct {
    const char *s;
    size_t len;
} Bytes;

#define BYTES(literal) {literal, sizeof(literal) - 1}

static const Bytes ROUND_TRIP_CASES[] = {
    BYTES(""),
    BYTES("a"),
    BYTES("Hello world"),
    BYTES(" leading space"),
    BYTES("trailing space "),
    BYTES("  several   spaces  "),
    BYTES(" "),
    BYTES("   "),
    BYTES("\n"),
    BYTES("line one\nline two\n\n"),
    BYTES("\ttabs\tand\r\nCRLF"),
    BYTES("emoji \xf0\x9f\xa6\x99\xf0\x9f\x9a\x80 family \xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x91\xa7"),
    BYTES("\xe4\xb8\xad\xe6\x96\x87 \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e \xed\x95\x9c\xea\xb5\xad"),
    BYTES("e\xcc\x81 combining acute, a\xcc\x8a ring"),
    BYTES("symbols \xc2\xbd \xe2\x88\x91 \xf0\x9d\x84\x9e"),
    BYTES("lone continuation \x80\xbf bytes"),
    BYTES("truncated \xe2\x82"),
    BYTES("truncated at the end \xf0\x9f"),
    BYTES("\xff\xfe 0xFF and 0xFE"),
    BYTES("nul\0inside\0"),
    BYTES("\xc3 space swallowed by a broken lead byte"),
    BYTES("\xff a"),
    BYTES("overlong \xc0\xaf surrogate \xed\xa0\x80 too big \xf4\x90\x80\x80"),
    BYTES("control text <s> </s> <unk> <0x41> stays text"),
};

static void round_trip_all(const Tokenizer *t, const char *who)
{
    size_t n = sizeof ROUND_TRIP_CASES / sizeof ROUND_TRIP_CASES[0];
    for (size_t i = 0; i < n; i++) {
        assert_round_trip(t, ROUND_TRIP_CASES[i].s, ROUND_TRIP_CASES[i].len, false, who);
        assert_round_trip(t, ROUND_TRIP_CASES[i].s, ROUND_TRIP_CASES[i].len, true, who);
    }
}

/* xorshift64*: the fuzz needs reproducible bytes, nothing more. */
static uint64_t fuzz_next(uint64_t *state)
{
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return *state * 0x2545f4914f6cdd1dULL;
}

/* Random bytes that hit the interesting cases often: ASCII, spaces, newlines, whole
 * multi-byte characters, stray continuation and lead bytes, anything at all. */
static size_t fuzz_string(uint64_t *state, char *buf, size_t cap)
{
    static const char *const chars[] = {"\xc3\xa9", "\xc2\xbd", "\xe4\xb8\xad", "\xf0\x9f\xa6\x99",
                                        "\xe2\x82\xac", "\xcc\x81"};
    size_t len = fuzz_next(state) % 24, n = 0;
    while (n < len && n + 4 < cap) {
        uint64_t r = fuzz_next(state);
        switch (r % 10) {
        case 0:
        case 1:
        case 2:
            buf[n++] = (char)('a' + (r >> 8) % 26);
            break;
        case 3:
        case 4:
            buf[n++] = ' ';
            break;
        case 5:
            buf[n++] = (r >> 8) % 2 ? '\n' : '\t';
            break;
        case 6: {
            const char *c = chars[(r >> 8) % 6];
            memcpy(buf + n, c, strlen(c));
            n += strlen(c);
            break;
        }
        case 7:
            buf[n++] = (char)(0x80 + (r >> 8) % 64);
            break;
        case 8:
            buf[n++] = (char)(0xC0 + (r >> 8) % 64);
            break;
        default:
            buf[n++] = (char)((r >> 8) & 0xFF);
        }
    }
    return n;
}

/* A "▁" already in the text decodes to a space (as in SentencePiece): such strings are
 * left out of the fuzz. */
static bool has_space_mark(const char *s, size_t n)
{
    for (size_t i = 0; i + 3 <= n; i++)
        if (memcmp(s + i, "\xe2\x96\x81", 3) == 0)
            return true;
    return false;
}

static void fuzz_round_trips(const Tokenizer *t, const char *who, int count)
{
    uint64_t state = 0x9e3779b97f4a7c15ULL;
    char buf[128];
    for (int i = 0; i < count; i++) {
        size_t n = fuzz_string(&state, buf, sizeof buf);
        if (!has_space_mark(buf, n))
            assert_round_trip(t, buf, n, i % 2 == 0, who);
    }
}

Test(tokenizer, round_trip_char)
{
    Tokenizer t;
    train_char(&t);
    round_trip_all(&t, "char");
    fuzz_round_trips(&t, "char fuzz", 3000);
    tokenizer_free(&t);
}

Test(tokenizer, round_trip_bpe)
{
    Tokenizer t;
    train_bpe(&t, TRAIN_TEXT, 290);
    round_trip_all(&t, "bpe");
    fuzz_round_trips(&t, "bpe fuzz", 3000);
    tokenizer_free(&t);
}

Test(tokenizer, round_trip_llama)
{
    SHARED_FILE_OR_SKIP(vocab_path, SPM_VOCAB);
    Tokenizer t;
    load_vocab(&t, vocab_path);
    round_trip_all(&t, "llama");
    fuzz_round_trips(&t, "llama fuzz", 3000);
    tokenizer_free(&t);
}

/* ---- (c) Trainer facts, computed by hand ---- */

#define SP "\xe2\x96\x81" /* "▁" */

static void assert_piece(const Tokenizer *t, int id, const char *piece)
{
    cr_assert_lt(id, t->n_vocab);
    cr_assert_str_eq(t->pieces[id], piece, "piece %d is '%s', expected '%s'", id,
                     t->pieces[id], piece);
}

static void assert_pieces_unique(const Tokenizer *t)
{
    for (int id = 0; id < t->n_vocab; id++)
        cr_assert_eq(tokenizer_lookup(t, t->pieces[id], strlen(t->pieces[id])), id,
                     "piece %d '%s' is not unique", id, t->pieces[id]);
}

static void assert_fixed_layout(const Tokenizer *t)
{
    assert_piece(t, 0, "<unk>");
    assert_piece(t, 1, "<s>");
    assert_piece(t, 2, "</s>");
    cr_assert(t->unk_id == 0 && t->bos_id == 1 && t->eos_id == 2);
    cr_assert(t->types[0] == TOKEN_TYPE_UNKNOWN && t->types[1] == TOKEN_TYPE_CONTROL &&
              t->types[2] == TOKEN_TYPE_CONTROL);
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        assert_piece(t, 3 + b, name);
        cr_assert_eq(t->types[3 + b], TOKEN_TYPE_BYTE);
        cr_assert_eq(t->byte_token[b], 3 + b);
    }
}

/* "aaab aab" is " aaab aab" after the space prefix: the words "▁aaab" and "▁aab".
 * Characters: a 5 times, b twice, ▁ twice (b before ▁ in byte order): ids 259, 260, 261.
 * Pairs: (a,a) 2+1 = 3, (▁,a) 2, (a,b) 2: "aa" is merged first. The words become
 * ▁ aa a b and ▁ aa b: (▁,aa) 2, every other pair once: "▁aa" second. Then no pair occurs
 * twice, so training stops with 264 pieces even though 1000 were allowed. */
Test(tokenizer, bpe_learns_hand_computed_merges)
{
    Tokenizer t;
    train_bpe(&t, "aaab aab", 1000);
    assert_fixed_layout(&t);
    cr_assert_eq(t.n_vocab, 264);
    assert_piece(&t, 259, "a");
    assert_piece(&t, 260, "b");
    assert_piece(&t, 261, SP);
    assert_piece(&t, 262, "aa");
    assert_piece(&t, 263, SP "aa");
    cr_assert_gt(t.scores[262], t.scores[263], "the first merge must score highest");
    for (int id = 259; id <= 261; id++)
        cr_assert_lt(t.scores[id], t.scores[263], "characters score below every merge");
    cr_assert(t.add_space_prefix && t.add_bos);
    /* The encoder replays the merges: ▁aa a b ▁aa b. */
    assert_encodes_to(&t, "aaab aab", (const int[]){263, 259, 260, 263, 260}, 5);
    tokenizer_free(&t);
}

/* "ab ab cd cd": the words ▁ab and ▁cd twice each, so (▁,a), (a,b), (▁,c), (c,d) all
 * occur twice. Ties go to the left piece first in byte order ("a" < "c" < "▁"), then the
 * right piece: ab, cd, then (▁,ab) and (▁,cd) tie on "▁" and "ab" < "cd". */
Test(tokenizer, bpe_breaks_ties_by_bytes)
{
    Tokenizer t;
    train_bpe(&t, "ab ab cd cd", 1000);
    cr_assert_eq(t.n_vocab, 259 + 5 + 4);
    assert_piece(&t, 259, SP);
    assert_piece(&t, 264, "ab");
    assert_piece(&t, 265, "cd");
    assert_piece(&t, 266, SP "ab");
    assert_piece(&t, 267, SP "cd");
    tokenizer_free(&t);
}

Test(tokenizer, bpe_respects_vocab_size)
{
    Tokenizer t;
    train_bpe(&t, "aaab aab", 262); /* room for the characters only: no merge */
    cr_assert_eq(t.n_vocab, 262);
    cr_assert_eq(tokenizer_lookup(&t, "aa", 2), -1);
    tokenizer_free(&t);

    train_bpe(&t, "aaab aab", 263); /* one merge */
    cr_assert_eq(t.n_vocab, 263);
    assert_piece(&t, 262, "aa");
    tokenizer_free(&t);

    /* Too small even for every character: the most frequent ones stay ("▁" loses the tie
     * with "b"), and text still round-trips through byte tokens. */
    train_bpe(&t, "aaab aab", 261);
    cr_assert_eq(t.n_vocab, 261);
    assert_piece(&t, 259, "a");
    assert_piece(&t, 260, "b");
    cr_assert_eq(tokenizer_lookup(&t, SP, 3), -1);
    assert_round_trip(&t, "aaab aab", 8, true, "bpe 261");
    tokenizer_free(&t);

    Error err;
    t = (Tokenizer){0};
    cr_assert_eq(tokenizer_train_bpe(&t, "abc", 3, 258, &err), -1);
    cr_assert(strstr(err.msg, "259"), "the error should name the minimum: %s", err.msg);
}

/* A merge that could assemble a special piece is never learned: with "<s" in the
 * vocabulary, the text "<s>" would merge into the control token <s>, which decodes to
 * nothing. */
Test(tokenizer, bpe_never_builds_special_pieces)
{
    Tokenizer t;
    const char *text = "<s> x <s> x </s> <s> <0x41> <0x41> <unk> <unk> s> s> <s <s";
    train_bpe(&t, text, 2000);
    for (int id = 259; id < t.n_vocab; id++) {
        const char *p = t.pieces[id];
        size_t n = strlen(p);
        for (int s = 0; s < 259 && n > 1; s++) {
            const char *special = t.pieces[s];
            size_t m = strlen(special);
            cr_assert(n > m || (memcmp(special, p, n) != 0 && memcmp(special + m - n, p, n) != 0),
                      "learned piece '%s' could build '%s'", p, special);
        }
    }
    int *ids;
    size_t n;
    encode_ok(&t, text, strlen(text), false, &ids, &n);
    for (size_t i = 0; i < n; i++)
        cr_assert(ids[i] >= 259 || t.types[ids[i]] == TOKEN_TYPE_BYTE, "special token %d in %s",
                  ids[i], show_ids(ids, n));
    free(ids);
    assert_round_trip(&t, text, strlen(text), true, "bpe specials");
    tokenizer_free(&t);
}

/* "hello world ½" has the characters l (3), o (2), ▁ (2), then d e h r w ½ once each;
 * equal counts go in byte order. */
Test(tokenizer, char_vocab_is_specials_bytes_and_characters)
{
    Tokenizer t = {0};
    Error err;
    const char *text = "hello world \xc2\xbd";
    cr_assert_eq(tokenizer_train_char(&t, text, strlen(text), &err), 0, "%s", err.msg);
    assert_fixed_layout(&t);
    static const char *const order[] = {"l", "o", SP, "d", "e", "h", "r", "w", "\xc2\xbd"};
    cr_assert_eq(t.n_vocab, 259 + 9);
    for (int i = 0; i < 9; i++) {
        assert_piece(&t, 259 + i, order[i]);
        cr_assert_eq(t.types[259 + i], TOKEN_TYPE_NORMAL);
    }
    cr_assert(!t.add_space_prefix && t.add_bos);
    assert_encodes_to(&t, "hello", (const int[]){264, 263, 259, 259, 260}, 5);
    tokenizer_free(&t);

    /* Invalid bytes are not characters: "\x80" is a lone continuation byte and "\xff"
     * (a 4-byte lead, clipped at the end) a broken sequence. */
    cr_assert_eq(tokenizer_train_char(&t, "ab\x80" "c\xff", 5, &err), 0, "%s", err.msg);
    cr_assert_eq(t.n_vocab, 259 + 3);
    tokenizer_free(&t);
}

Test(tokenizer, trained_vocabularies_are_sane)
{
    Tokenizer c, b, again;
    train_char(&c);
    train_bpe(&b, TRAIN_TEXT, 290);
    train_bpe(&again, TRAIN_TEXT, 290);
    assert_fixed_layout(&c);
    assert_fixed_layout(&b);
    assert_pieces_unique(&c);
    assert_pieces_unique(&b);
    cr_assert_eq(b.n_vocab, 290);

    /* Deterministic: the same corpus gives the same vocabulary. */
    cr_assert_eq(again.n_vocab, b.n_vocab);
    for (int id = 0; id < b.n_vocab; id++) {
        cr_assert_str_eq(again.pieces[id], b.pieces[id]);
        cr_assert_eq(again.scores[id], b.scores[id]);
    }

    /* BPE compresses its training text better than characters do. */
    int *ids_c, *ids_b;
    size_t n_c, n_b;
    encode_ok(&c, TRAIN_TEXT, strlen(TRAIN_TEXT), false, &ids_c, &n_c);
    encode_ok(&b, TRAIN_TEXT, strlen(TRAIN_TEXT), false, &ids_b, &n_b);
    cr_assert_lt(n_b, n_c, "bpe %zu tokens, char %zu", n_b, n_c);
    free(ids_c);
    free(ids_b);
    tokenizer_free(&c);
    tokenizer_free(&b);
    tokenizer_free(&again);
}

Test(tokenizer, bpe_on_tinyshakespeare, .timeout = 120)
{
    SHARED_FILE_OR_SKIP(corpus_path, "data/tinyshakespeare.txt");
    char *text;
    size_t len;
    Error err;
    cr_assert_eq(file_read_all(corpus_path, &text, &len, &err), 0, "%s", err.msg);
    Tokenizer t = {0};
    cr_assert_eq(tokenizer_train_bpe(&t, text, len, 4096, &err), 0, "%s", err.msg);
    cr_assert_eq(t.n_vocab, 4096);
    assert_pieces_unique(&t);
    int *ids;
    size_t n;
    encode_ok(&t, text, len, false, &ids, &n);
    cr_assert_lt(n * 3, len, "%zu tokens for %zu bytes: under 3 bytes a token", n, len);
    free(ids);
    assert_round_trip(&t, text, 20000, true, "shakespeare");
    free(text);
    tokenizer_free(&t);
}

/* USER_DEFINED pieces are cut out of the text before SPM runs (llama.cpp does so even
 * without parse_special), and the raw text after one gets its own space prefix. */
Test(tokenizer, user_defined_pieces_are_cut_out)
{
    const char *pieces[] = {"<unk>", "<s>", "</s>", SP, "a", "b", SP "a", "<tool>"};
    const int32_t types[] = {TOKEN_TYPE_UNKNOWN, TOKEN_TYPE_CONTROL, TOKEN_TYPE_CONTROL,
                             TOKEN_TYPE_NORMAL,  TOKEN_TYPE_NORMAL,  TOKEN_TYPE_NORMAL,
                             TOKEN_TYPE_NORMAL,  TOKEN_TYPE_USER_DEFINED};
    Tokenizer t;
    Error err;
    cr_assert_eq(tokenizer_init(&t, 8, pieces, NULL, types, &err), 0, "%s", err.msg);
    cr_assert(t.bos_id == 1 && t.eos_id == 2 && t.unk_id == 0);
    assert_encodes_to(&t, "a<tool>b", (const int[]){6, 7, 3, 5}, 4);
    assert_encodes_to(&t, "<tool><tool>", (const int[]){7, 7}, 2);
    assert_round_trip(&t, "a<tool>b", 8, true, "user-defined");
    assert_round_trip(&t, "<tool> a<tool><tool>", 20, false, "user-defined");
    /* No byte tokens here: an unknown character falls back to <unk>. */
    assert_encodes_to(&t, "c", (const int[]){3, 0}, 2);
    tokenizer_free(&t);
}

Test(tokenizer, init_rejects_bad_vocabularies)
{
    Tokenizer t;
    Error err;
    const char *dup[] = {"a", "b", "a"};
    cr_assert_eq(tokenizer_init(&t, 3, dup, NULL, NULL, &err), -1);
    cr_assert(strstr(err.msg, "repeats"), "%s", err.msg);
    const char *bad_byte[] = {"<0xZZ>"};
    const int32_t byte_type[] = {TOKEN_TYPE_BYTE};
    cr_assert_eq(tokenizer_init(&t, 1, bad_byte, NULL, byte_type, &err), -1);
    cr_assert(strstr(err.msg, "BYTE"), "%s", err.msg);
    tokenizer_free(NULL);
    tokenizer_free(&t);

    const char *ok[] = {"a"};
    cr_assert_eq(tokenizer_init(&t, 1, ok, NULL, NULL, &err), 0, "%s", err.msg);
    int *ids;
    size_t n;
    cr_assert_eq(tokenizer_encode(&t, "a", 1, true, &ids, &n, &err), -1, "no <s> to add");
    cr_assert_eq(tokenizer_encode(&t, "b", 1, false, &ids, &n, &err), -1,
                 "no byte token, no <unk>");
    cr_assert(strstr(err.msg, "cannot be encoded"), "%s", err.msg);
    char *text;
    size_t len;
    cr_assert_eq(tokenizer_decode(&t, (const int[]){5}, 1, &text, &len, &err), -1);
    tokenizer_free(&t);
}

/* ---- (d) GGUF ---- */

static void write_and_reload(const Tokenizer *t, Tokenizer *back)
{
    char dir[64], path[128];
    snprintf(dir, sizeof dir, "%s", test_make_tmpdir());
    snprintf(path, sizeof path, "%s/vocab.gguf", dir);
    GgufWriter *w = gguf_writer_new();
    cr_assert_not_null(w);
    gguf_writer_add_str(w, "general.architecture", "llama");
    tokenizer_to_gguf(t, w);
    Error err;
    cr_assert_eq(gguf_writer_write(w, path, &err), 0, "%s", err.msg);
    gguf_writer_free(w);
    load_vocab(back, path);
    remove(path);
    rmdir(dir);
}

static void assert_same_tokenizer(const Tokenizer *a, const Tokenizer *b)
{
    cr_assert_eq(a->n_vocab, b->n_vocab);
    for (int id = 0; id < a->n_vocab; id++) {
        cr_assert_str_eq(a->pieces[id], b->pieces[id]);
        cr_assert_eq(a->scores[id], b->scores[id], "score of piece %d", id);
        cr_assert_eq(a->types[id], b->types[id], "type of piece %d", id);
    }
    cr_assert(a->bos_id == b->bos_id && a->eos_id == b->eos_id && a->unk_id == b->unk_id);
    cr_assert(a->add_bos == b->add_bos && a->add_space_prefix == b->add_space_prefix);
    size_t n_cases = sizeof ROUND_TRIP_CASES / sizeof ROUND_TRIP_CASES[0];
    for (size_t i = 0; i < n_cases; i++) {
        int *ids_a, *ids_b;
        size_t n_a, n_b;
        encode_ok(a, ROUND_TRIP_CASES[i].s, ROUND_TRIP_CASES[i].len, true, &ids_a, &n_a);
        encode_ok(b, ROUND_TRIP_CASES[i].s, ROUND_TRIP_CASES[i].len, true, &ids_b, &n_b);
        cr_assert(same_ids(ids_a, n_a, ids_b, n_b));
        free(ids_a);
        free(ids_b);
    }
}

Test(tokenizer, gguf_round_trip_trained)
{
    Tokenizer c, b, back;
    train_char(&c);
    write_and_reload(&c, &back);
    assert_same_tokenizer(&c, &back);
    tokenizer_free(&back);
    train_bpe(&b, TRAIN_TEXT, 290);
    write_and_reload(&b, &back);
    assert_same_tokenizer(&b, &back);
    tokenizer_free(&back);
    tokenizer_free(&c);
    tokenizer_free(&b);
}

Test(tokenizer, gguf_round_trip_llama)
{
    SHARED_FILE_OR_SKIP(vocab_path, SPM_VOCAB);
    Tokenizer t, back;
    load_vocab(&t, vocab_path);
    write_and_reload(&t, &back);
    assert_same_tokenizer(&t, &back);
    tokenizer_free(&t);
    tokenizer_free(&back);
}

/* The metadata of the three byte-level vocabularies, as /work/shared/README.md and the
 * files' keys give it; eot of GPT-2 is found by its text, <|endoftext|>. */
Test(tokenizer, gguf_reads_gpt2_model, .timeout = 60)
{
    SHARED_FILE_OR_SKIP(gpt2_path, GPT2_VOCAB);
    Tokenizer t;
    load_vocab(&t, gpt2_path);
    cr_assert_eq(t.kind, TOKENIZER_BPE);
    cr_assert_str_eq(tokenizer_kind_name(&t), "byte-level BPE");
    cr_assert_str_eq(tokenizer_pre_name(&t), "gpt-2");
    cr_assert_eq(t.n_vocab, 50257);
    cr_assert(t.bos_id == 50256 && t.eos_id == 50256 && t.eot_id == 50256);
    cr_assert(t.unk_id == -1 && t.pad_id == -1 && !t.add_bos && !t.add_eos);
    cr_assert(!t.add_space_prefix);
    tokenizer_free(&t);

    SHARED_FILE_OR_SKIP(llama3_path, LLAMA3_VOCAB);
    load_vocab(&t, llama3_path);
    cr_assert_str_eq(tokenizer_pre_name(&t), "llama-bpe");
    cr_assert_eq(t.n_vocab, 128256);
    cr_assert(t.bos_id == 128000 && t.eos_id == 128001 && t.eot_id == 128009);
    cr_assert(t.add_bos && !t.add_eos);
    tokenizer_free(&t);

    SHARED_FILE_OR_SKIP(qwen3_path, QWEN3_VOCAB);
    load_vocab(&t, qwen3_path);
    cr_assert_str_eq(tokenizer_pre_name(&t), "qwen2");
    cr_assert_eq(t.n_vocab, 151936);
    cr_assert(t.bos_id == 151643 && t.eos_id == 151645 && t.eot_id == 151645);
    cr_assert(t.pad_id == 151643 && !t.add_bos);
    tokenizer_free(&t);
}

/* GPT-2's byte alphabet: the 188 printable Latin-1 bytes are ids 0..187 in byte order and
 * the other 68 follow; " " is 'Ġ' (id 220) and "\n" is 'Ċ' (id 198), the two most famous
 * GPT-2 ids. Every byte's token decodes to exactly that byte. */
Test(tokenizer, gpt2_byte_alphabet)
{
    SHARED_FILE_OR_SKIP(vocab_path, GPT2_VOCAB);
    Tokenizer t;
    load_vocab(&t, vocab_path);
    cr_assert_eq(t.byte_token['!'], 0);
    cr_assert_eq(t.byte_token[' '], 220);
    cr_assert_eq(t.byte_token['\n'], 198);
    cr_assert_str_eq(t.pieces[220], "\xc4\xa0"); /* U+0120 */
    cr_assert_str_eq(t.pieces[t.byte_token[0x00]], "\xc4\x80"); /* U+0100: the first stand-in */
    cr_assert_str_eq(t.pieces[t.byte_token[0x7F]], "\xc4\xa1"); /* U+0121: after the 33 controls */
    cr_assert_str_eq(t.pieces[t.byte_token[0xAD]], "\xc5\x83"); /* U+0143: the 68th */
    for (int b = 0; b < 256; b++) {
        char buf[8];
        cr_assert_eq(tokenizer_token_bytes(&t, t.byte_token[b], buf, sizeof buf), 1, "byte %d", b);
        cr_assert_eq((unsigned char)buf[0], b);
    }
    char buf[16];
    int hello = tokenizer_lookup(&t, "\xc4\xa0Hello", 7); /* "ĠHello" */
    cr_assert_geq(hello, 0);
    cr_assert_eq(tokenizer_token_bytes(&t, hello, buf, sizeof buf), 6);
    cr_assert(memcmp(buf, " Hello", 6) == 0);
    cr_assert_eq(tokenizer_token_bytes(&t, 50256, buf, sizeof buf), 0, "<|endoftext|> is control");
    tokenizer_free(&t);
}

/* Control tokens print nothing; user-defined tokens print their text; a text with control
 * tokens around it decodes to the text alone. */
Test(tokenizer, bpe_decodes_special_tokens, .timeout = 60)
{
    SHARED_FILE_OR_SKIP(llama3_path, LLAMA3_VOCAB);
    Tokenizer t;
    load_vocab(&t, llama3_path);
    char buf[32];
    cr_assert_eq(tokenizer_token_bytes(&t, 128009, buf, sizeof buf), 0, "<|eot_id|>");
    cr_assert_eq(tokenizer_token_bytes(&t, 128000, buf, sizeof buf), 0, "<|begin_of_text|>");
    int *ids;
    size_t n;
    encode_ok(&t, "Hello world", 11, true, &ids, &n);
    cr_assert(n == 3 && ids[0] == 128000, "%s", show_ids(ids, n));
    int with_eot[4] = {ids[0], ids[1], ids[2], 128009};
    char *text;
    size_t len;
    Error err;
    cr_assert_eq(tokenizer_decode(&t, with_eot, 4, &text, &len, &err), 0, "%s", err.msg);
    cr_assert_str_eq(text, "Hello world");
    free(text);
    free(ids);
    tokenizer_free(&t);

    SHARED_FILE_OR_SKIP(qwen3_path, QWEN3_VOCAB);
    load_vocab(&t, qwen3_path);
    cr_assert_eq(t.types[151667], TOKEN_TYPE_USER_DEFINED);
    cr_assert_eq(tokenizer_token_bytes(&t, 151667, buf, sizeof buf), 7);
    cr_assert(memcmp(buf, "<think>", 7) == 0);
    cr_assert_eq(tokenizer_token_bytes(&t, 151645, buf, sizeof buf), 0, "<|im_end|>");
    tokenizer_free(&t);
}

static void assert_encodes_special(const Tokenizer *t, const char *text, const int *want,
                                   size_t n_want)
{
    int *ids;
    size_t n;
    Error err;
    EncodeOptions opt = {.parse_special = true};
    cr_assert_eq(tokenizer_encode_with(t, text, strlen(text), opt, &ids, &n, &err), 0, "%s",
                 err.msg);
    cr_assert(same_ids(ids, n, want, n_want), "parse_special '%s':\n  expected %s\n  got      %s",
              show_bytes(text, strlen(text)), show_ids(want, n_want), show_ids(ids, n));
    free(ids);
}

static bool ids_contain(const int *ids, size_t n, int id)
{
    for (size_t i = 0; i < n; i++)
        if (ids[i] == id)
            return true;
    return false;
}

/* With parse_special, control-token text in a chat prompt becomes the control ids (as
 * llama.cpp and Hugging Face tokenizers give them); without it, it stays plain text. The
 * words between them are what the vectors above check: "user" 882 / 872, "\n\n" 271,
 * "\n" 198, "Hi" 13347 / 13048. */
Test(tokenizer, bpe_parse_special, .timeout = 60)
{
    SHARED_FILE_OR_SKIP(llama3_path, LLAMA3_VOCAB);
    Tokenizer t;
    load_vocab(&t, llama3_path);
    const char *llama3 = "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>";
    assert_encodes_special(&t, llama3, (const int[]){128006, 882, 128007, 271, 13347, 128009}, 6);
    int *ids;
    size_t n;
    encode_ok(&t, llama3, strlen(llama3), false, &ids, &n);
    cr_assert(!ids_contain(ids, n, 128009) && !ids_contain(ids, n, 128006), "%s",
              show_ids(ids, n));
    free(ids);
    /* bos and eos around it, as a prompt would have them. */
    Error err;
    EncodeOptions opt = {.add_bos = true, .add_eos = true, .parse_special = true};
    cr_assert_eq(tokenizer_encode_with(&t, "<|eot_id|>", 10, opt, &ids, &n, &err), 0, "%s",
                 err.msg);
    cr_assert(same_ids(ids, n, (const int[]){128000, 128009, 128001}, 3), "%s", show_ids(ids, n));
    free(ids);
    tokenizer_free(&t);

    SHARED_FILE_OR_SKIP(qwen3_path, QWEN3_VOCAB);
    load_vocab(&t, qwen3_path);
    const char *chatml = "<|im_start|>user\nHi<|im_end|>\n<think>";
    assert_encodes_special(&t, chatml, (const int[]){151644, 872, 198, 13048, 151645, 198, 151667},
                           7);
    encode_ok(&t, chatml, strlen(chatml), false, &ids, &n);
    cr_assert(!ids_contain(ids, n, 151644) && !ids_contain(ids, n, 151645), "%s", show_ids(ids, n));
    cr_assert(ids_contain(ids, n, 151667), "user-defined <think> always matches: %s",
              show_ids(ids, n));
    free(ids);
    tokenizer_free(&t);
}

/* The SentencePiece encoder parses special text too: "<s>" becomes bos. */
Test(tokenizer, spm_parse_special)
{
    SHARED_FILE_OR_SKIP(vocab_path, SPM_VOCAB);
    Tokenizer t;
    load_vocab(&t, vocab_path);
    int *ids;
    size_t n;
    Error err;
    EncodeOptions opt = {.parse_special = true};
    cr_assert_eq(tokenizer_encode_with(&t, "<s>[INST] Hi [/INST]", 20, opt, &ids, &n, &err), 0,
                 "%s", err.msg);
    cr_assert(n > 1 && ids[0] == 1 && !ids_contain(ids + 1, n - 1, 1), "%s", show_ids(ids, n));
    free(ids);
    tokenizer_free(&t);
}

Test(tokenizer, round_trip_bpe_vocabularies, .timeout = 120)
{
    static const char *const vocabs[] = {GPT2_VOCAB, LLAMA3_VOCAB, QWEN3_VOCAB};
    for (int v = 0; v < 3; v++) {
        SHARED_FILE_OR_SKIP(vocab_path, vocabs[v]);
        Tokenizer t;
        load_vocab(&t, vocab_path);
        round_trip_all(&t, vocabs[v]);
        fuzz_round_trips(&t, vocabs[v], 2000);
        /* Invalid bytes are never lost: "\xff" is its own word, the byte's own token. */
        int *ids;
        size_t n;
        encode_ok(&t, "a\xff", 2, false, &ids, &n);
        cr_assert(n == 2 && ids[1] == t.byte_token[0xFF], "%s", show_ids(ids, n));
        free(ids);
        tokenizer_free(&t);
    }
}

/* ---- Byte-level BPE by hand ----
 * A vocabulary of the 256 byte stand-ins, written here from GPT-2's rule (printable
 * Latin-1 bytes stand for themselves, the other 68 take U+0100.. in byte order), then a
 * few merged pieces and special tokens. */
enum { TINY_AB = 256, TINY_BC, TINY_ABC, TINY_AA, TINY_SPACE_A, TINY_END, TINY_TOOL, TINY_N };

static void tiny_bpe(Tokenizer *t, const char *const *merges, size_t n_merges, const char *pre)
{
    static char chars[256][3];
    const char *pieces[TINY_N];
    int32_t types[TINY_N];
    int next = 256;
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
        int cp = printable ? b : next++;
        if (cp < 0x80) {
            chars[b][0] = (char)cp;
            chars[b][1] = '\0';
        } else {
            chars[b][0] = (char)(0xC0 | cp >> 6);
            chars[b][1] = (char)(0x80 | (cp & 0x3F));
            chars[b][2] = '\0';
        }
        pieces[b] = chars[b];
        types[b] = TOKEN_TYPE_NORMAL;
    }
    const char *extra[] = {"ab", "bc", "abc", "aa", "\xc4\xa0" "a", "<|end|>", "<x>"};
    for (int i = TINY_AB; i < TINY_N; i++) {
        pieces[i] = extra[i - TINY_AB];
        types[i] = TOKEN_TYPE_NORMAL;
    }
    types[TINY_END] = TOKEN_TYPE_CONTROL;
    types[TINY_TOOL] = TOKEN_TYPE_USER_DEFINED;
    Error err;
    cr_assert_eq(tokenizer_init_bpe(t, TINY_N, pieces, types, merges, n_merges, pre, &err), 0,
                 "%s", err.msg);
}

/* "abc" has the pairs (a,b) and (b,c): the one with the lower rank merges first, and then
 * no merge joins what is left. */
Test(tokenizer, bpe_merges_lowest_rank_first)
{
    Tokenizer t;
    tiny_bpe(&t, (const char *const[]){"b c", "a b"}, 2, "gpt-2");
    assert_encodes_to(&t, "abc", (const int[]){'a', TINY_BC}, 2);
    tokenizer_free(&t);
    tiny_bpe(&t, (const char *const[]){"a b", "b c"}, 2, "gpt-2");
    assert_encodes_to(&t, "abc", (const int[]){TINY_AB, 'c'}, 2);
    /* Merges go on from merged symbols: ab + c. */
    tokenizer_free(&t);
    tiny_bpe(&t, (const char *const[]){"a b", "b c", "ab c"}, 3, "gpt-2");
    assert_encodes_to(&t, "abc", (const int[]){TINY_ABC}, 1);
    /* The same merge twice in a word: the left pair first. */
    tokenizer_free(&t);
    tiny_bpe(&t, (const char *const[]){"a a"}, 1, "gpt-2");
    assert_encodes_to(&t, "aaa", (const int[]){TINY_AA, 'a'}, 2);
    /* " a" is one word, 'Ġ' 'a', and "Ġ a" merges it; the words of "a a" are "a", " a". */
    tokenizer_free(&t);
    tiny_bpe(&t, (const char *const[]){"\xc4\xa0 a", "a a"}, 2, "gpt-2");
    assert_encodes_to(&t, "a a", (const int[]){'a', TINY_SPACE_A}, 2);
    assert_round_trip(&t, "a a", 3, false, "tiny");
    tokenizer_free(&t);
}

/* llama-bpe's ignore_merges: a word that is a whole token is that token, even when no
 * merge builds it; GPT-2 merges "abc" as far as its merges go. */
Test(tokenizer, bpe_ignore_merges)
{
    Tokenizer t;
    tiny_bpe(&t, (const char *const[]){"a b"}, 1, "llama-bpe");
    cr_assert(t.add_bos, "llama-bpe adds bos by default, as llama.cpp");
    assert_encodes_to(&t, "abc", (const int[]){TINY_ABC}, 1);
    tokenizer_free(&t);
    tiny_bpe(&t, (const char *const[]){"a b"}, 1, "gpt-2");
    cr_assert(!t.add_bos);
    assert_encodes_to(&t, "abc", (const int[]){TINY_AB, 'c'}, 2);
    tokenizer_free(&t);
}

/* USER_DEFINED text always becomes its token; CONTROL text only with parse_special. */
Test(tokenizer, bpe_special_pieces)
{
    Tokenizer t;
    tiny_bpe(&t, (const char *const[]){"a b"}, 1, "gpt-2");
    assert_encodes_to(&t, "a<x>b", (const int[]){'a', TINY_TOOL, 'b'}, 3);
    assert_encodes_to(&t, "<|end|>", (const int[]){'<', '|', 'e', 'n', 'd', '|', '>'}, 7);
    assert_encodes_special(&t, "ab<|end|>", (const int[]){TINY_AB, TINY_END}, 2);
    char buf[8];
    cr_assert_eq(tokenizer_token_bytes(&t, TINY_END, buf, sizeof buf), 0);
    cr_assert_eq(tokenizer_token_bytes(&t, TINY_TOOL, buf, sizeof buf), 3);
    cr_assert(memcmp(buf, "<x>", 3) == 0);
    cr_assert_eq(tokenizer_token_bytes(&t, TINY_SPACE_A, buf, sizeof buf), 2);
    cr_assert(memcmp(buf, " a", 2) == 0);
    assert_round_trip(&t, "a<x> <x>b<|end|>", 16, false, "tiny specials");
    tokenizer_free(&t);
}

/* Merges whose halves are not tokens are left out; a merge without a space is an error. */
Test(tokenizer, bpe_rejects_bad_merges)
{
    Tokenizer t;
    tiny_bpe(&t, (const char *const[]){"x yz", "a b"}, 2, "gpt-2");
    assert_encodes_to(&t, "ab", (const int[]){TINY_AB}, 1);
    tokenizer_free(&t);
    const char *pieces[] = {"a", "b", "ab"};
    Error err;
    cr_assert_eq(tokenizer_init_bpe(&t, 3, pieces, NULL, (const char *const[]){"ab"}, 1, NULL,
                                    &err),
                 -1);
    cr_assert(strstr(err.msg, "tokenizer.ggml.merges[0]"), "%s", err.msg);
    cr_assert_eq(tokenizer_init_bpe(&t, 3, pieces, NULL, NULL, 0, "xyz", &err), -1);
    cr_assert(strstr(err.msg, "tokenizer.ggml.pre 'xyz' is not supported (quill knows: "),
              "%s", err.msg);
}

Test(tokenizer, gguf_round_trip_bpe)
{
    SHARED_FILE_OR_SKIP(vocab_path, GPT2_VOCAB);
    Tokenizer t, back;
    load_vocab(&t, vocab_path);
    write_and_reload(&t, &back);
    assert_same_tokenizer(&t, &back);
    cr_assert_eq(back.kind, TOKENIZER_BPE);
    cr_assert_str_eq(tokenizer_pre_name(&back), "gpt-2");
    cr_assert(back.eot_id == t.eot_id && back.pad_id == t.pad_id && back.add_eos == t.add_eos);
    tokenizer_free(&t);
    tokenizer_free(&back);
}

/* Writes a file with hand-made tokenizer metadata and expects tokenizer_from_gguf to
 * fail with a message containing `needle`. */
static void assert_gguf_rejected(void (*fill)(GgufWriter *), const char *needle)
{
    char dir[64], path[128];
    snprintf(dir, sizeof dir, "%s", test_make_tmpdir());
    snprintf(path, sizeof path, "%s/bad.gguf", dir);
    GgufWriter *w = gguf_writer_new();
    fill(w);
    Error err;
    cr_assert_eq(gguf_writer_write(w, path, &err), 0, "%s", err.msg);
    gguf_writer_free(w);
    GgufFile *f;
    cr_assert_eq(gguf_open(&f, path, &err), 0, "%s", err.msg);
    Tokenizer t;
    cr_assert_eq(tokenizer_from_gguf(&t, f, &err), -1, "accepted a bad vocabulary");
    cr_assert(strstr(err.msg, needle), "expected '%s' in: %s", needle, err.msg);
    gguf_close(f);
    remove(path);
    rmdir(dir);
}

static const char *const TINY_PIECES[] = {"<unk>", "<s>", "</s>"};

static void fill_short_scores(GgufWriter *w)
{
    gguf_writer_add_str(w, "tokenizer.ggml.model", "llama");
    gguf_writer_add_str_array(w, "tokenizer.ggml.tokens", TINY_PIECES, 3);
    gguf_writer_add_array(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32,
                          (const float[]){0, 0}, 2);
}

static void fill_bad_bos(GgufWriter *w)
{
    gguf_writer_add_str(w, "tokenizer.ggml.model", "llama");
    gguf_writer_add_str_array(w, "tokenizer.ggml.tokens", TINY_PIECES, 3);
    gguf_writer_add_u32(w, "tokenizer.ggml.bos_token_id", 3);
}

static void fill_no_model(GgufWriter *w)
{
    gguf_writer_add_str_array(w, "tokenizer.ggml.tokens", TINY_PIECES, 3);
}

static void fill_unknown_model(GgufWriter *w)
{
    gguf_writer_add_str(w, "tokenizer.ggml.model", "t5");
    gguf_writer_add_str_array(w, "tokenizer.ggml.tokens", TINY_PIECES, 3);
}

static const char *const BPE_PIECES[] = {"a", "b", "ab"};

static void fill_bpe_unknown_pre(GgufWriter *w)
{
    gguf_writer_add_str(w, "tokenizer.ggml.model", "gpt2");
    gguf_writer_add_str(w, "tokenizer.ggml.pre", "xyz");
    gguf_writer_add_str_array(w, "tokenizer.ggml.tokens", BPE_PIECES, 3);
    gguf_writer_add_str_array(w, "tokenizer.ggml.merges", (const char *const[]){"a b"}, 1);
}

static void fill_bpe_no_merges(GgufWriter *w)
{
    gguf_writer_add_str(w, "tokenizer.ggml.model", "gpt2");
    gguf_writer_add_str_array(w, "tokenizer.ggml.tokens", BPE_PIECES, 3);
}

Test(tokenizer, gguf_rejects_inconsistent_metadata)
{
    assert_gguf_rejected(fill_short_scores, "tokenizer.ggml.scores");
    assert_gguf_rejected(fill_bad_bos, "tokenizer.ggml.bos_token_id");
    assert_gguf_rejected(fill_no_model, "tokenizer.ggml.model");
    assert_gguf_rejected(fill_unknown_model, "tokenizer model 't5' is not supported");
    assert_gguf_rejected(fill_bpe_no_merges, "tokenizer.ggml.merges");
    assert_gguf_rejected(fill_bpe_unknown_pre,
                         "tokenizer.ggml.pre 'xyz' is not supported (quill knows: default, gpt-2");
}

/* The grammar stage's fast paths against its plain reference (docs/grammars.md, "Speed"):
 * the trie walk must allow exactly the tokens that reading each token's bytes allows, and
 * the sampler with its speedups must choose exactly the tokens the reference chooses, step
 * for step, seed for seed. The reference is the recognizer asked token by token
 * (grammar_vocab_mask_plain), whose verdicts tests/test_grammar.c checks against
 * hand-written ones and llama.cpp's. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "grammar_vocab.h"
#include "infer.h"
#include "loader.h"
#include "rng.h"
#include "sampler.h"
#include "test_util.h"

/* Any JSON value: strings (escapes, any code point but controls), numbers, nesting. */
static const char JSON_GRAMMAR[] =
    "root   ::= sp value sp\n"
    "value  ::= object | array | string | number | \"true\" | \"false\" | \"null\"\n"
    "object ::= \"{\" sp ( member ( sp \",\" sp member )* sp )? \"}\"\n"
    "member ::= string sp \":\" sp value\n"
    "array  ::= \"[\" sp ( value ( sp \",\" sp value )* sp )? \"]\"\n"
    "string ::= \"\\\"\" ( [^\"\\\\\\x00-\\x1f] | \"\\\\\" ( [\"\\\\/bfnrt] | \"u\" [0-9a-fA-F]{4} ) )* "
    "\"\\\"\"\n"
    "number ::= \"-\"? ( \"0\" | [1-9] [0-9]* ) ( \".\" [0-9]+ )? ( [eE] [-+]? [0-9]+ )?\n"
    "sp     ::= [ \\t\\n\\r]*\n";

/* Characters of two, three and four bytes, so that tokens ending inside a character (the
 * GPT-2 vocabulary's byte tokens) meet classes that can and cannot finish them. */
static const char UTF8_GRAMMAR[] = "root ::= ( [α-ω] | [一-鿿] | \"😀\" | [a-z ] )+ \".\"\n";

/* A JSON object with one string, where most steps are inside the string: most tokens
 * allowed, the shortcut's case. */
static const char STORY_GRAMMAR[] =
    "root ::= \"{\\\"story\\\": \\\"\" [^\"\\\\\\x00-\\x1f]* \"\\\"}\"\n";

/* A small fixed set of texts, so that most tokens are refused at their first bytes. */
static const char WORDS_GRAMMAR[] =
    "root ::= word (\" \" word){0,3} \".\"\n"
    "word ::= \"cat\" | \"dog\" | \"sun\" | \"tree\" | \"happy\" | \"big\"\n";

static void parse(Grammar *g, const char *text)
{
    Error err;
    cr_assert_eq(grammar_parse(text, strlen(text), g, &err), 0, "%s", err.msg);
}

static void load_tokenizer(Tokenizer *tok, const char *path)
{
    GgufFile *f;
    Error err;
    cr_assert_eq(gguf_open(&f, path, &err), 0, "%s", err.msg);
    cr_assert_eq(tokenizer_from_gguf(tok, f, &err), 0, "%s", err.msg);
    gguf_close(f);
}

/* Walks `walks` random texts of up to `steps` tokens through grammar g over tok's
 * vocabulary; at every state on the way the trie's mask must equal the plain one, token for
 * token. The next token is a random allowed one. Returns the states compared; *mixed counts
 * those where some tokens were allowed and some refused (a mask worth comparing). */
static int compare_masks(const Tokenizer *tok, const char *grammar_text, int walks, int steps,
                         int *mixed)
{
    Grammar g;
    parse(&g, grammar_text);
    GrammarVocab v;
    Error err;
    cr_assert_eq(grammar_vocab_init(&v, tok, &err), 0, "%s", err.msg);
    bool *plain = malloc((size_t)v.n_vocab * sizeof *plain);
    bool *trie = malloc((size_t)v.n_vocab * sizeof *trie);
    int *choices = malloc((size_t)v.n_vocab * sizeof *choices);
    cr_assert(plain && trie && choices);
    Rng rng;
    rng_seed(&rng, 7);
    int compared = 0;
    for (int w = 0; w < walks; w++) {
        GrammarMatcher m;
        cr_assert_eq(grammar_matcher_init(&m, &g, &err), 0, "%s", err.msg);
        for (int step = 0; step < steps; step++) {
            grammar_vocab_mask_plain(&v, &m, plain);
            grammar_vocab_mask_trie(&v, &m, trie);
            int n_allowed = 0;
            for (int t = 0; t < v.n_vocab; t++) {
                cr_assert_eq(trie[t], plain[t], "walk %d step %d: token %d: trie %d, plain %d",
                             w, step, t, trie[t], plain[t]);
                if (plain[t] && t != v.eos_id)
                    choices[n_allowed++] = t;
            }
            compared++;
            *mixed += n_allowed > 0 && n_allowed < v.n_vocab - 1;
            if (n_allowed == 0)
                break;
            int t = choices[(int)(rng_uniform(&rng) * (float)n_allowed) % n_allowed];
            bool fed;
            cr_assert_eq(grammar_matcher_feed(&m, v.bytes + v.start[t],
                                              v.start[t + 1] - v.start[t], &fed, &err), 0);
            cr_assert(fed, "token %d was allowed but is refused when fed", t);
        }
        grammar_matcher_free(&m);
    }
    free(choices);
    free(trie);
    free(plain);
    grammar_vocab_free(&v);
    grammar_free(&g);
    return compared;
}

/* Three vocabularies: stories260K's 512 SentencePiece tokens, Llama 2's 32,000 and GPT-2's
 * 50,257 byte-level BPE tokens (many of them pieces of UTF-8 characters), each under the
 * three grammars. */
Test(grammar_speed, trie_mask_equals_plain_mask_over_sampled_states, .timeout = 300)
{
    SHARED_FILE_OR_SKIP(stories, "models/stories260K.gguf");
    SHARED_FILE_OR_SKIP(llama, "vocab/ggml-vocab-llama-spm.gguf");
    SHARED_FILE_OR_SKIP(gpt2, "vocab/ggml-vocab-gpt-2.gguf");
    const struct {
        const char *path;
        int walks, steps;
    } vocabs[] = {{stories, 8, 24}, {llama, 3, 8}, {gpt2, 3, 8}};
    const char *grammars[] = {JSON_GRAMMAR, UTF8_GRAMMAR, WORDS_GRAMMAR};
    int compared = 0, mixed = 0;
    for (int i = 0; i < 3; i++) {
        Tokenizer tok;
        load_tokenizer(&tok, vocabs[i].path);
        for (int j = 0; j < 3; j++)
            compared += compare_masks(&tok, grammars[j], vocabs[i].walks, vocabs[i].steps, &mixed);
        tokenizer_free(&tok);
    }
    cr_log_info("%d states compared, %d with both allowed and refused tokens", compared, mixed);
    cr_assert_gt(compared, 300, "only %d states compared", compared);
    cr_assert_gt(mixed, compared / 2, "only %d of %d masks mixed", mixed, compared);
}

/* stories260K's model and tokenizer, and a grammar parsed from text. */
typedef struct {
    Model m;
    Tokenizer tok;
    Grammar g;
} Stories;

static void stories_open(Stories *st, const char *path, const char *grammar_text)
{
    Error err;
    cr_assert_eq(model_file_load(path, &st->m, &st->tok, &err), 0, "%s", err.msg);
    parse(&st->g, grammar_text);
}

static void stories_close(Stories *st)
{
    grammar_free(&st->g);
    tokenizer_free(&st->tok);
    model_free(&st->m);
}

/* A sampler with params and st's grammar. */
static void sampler_with_grammar(const Stories *st, const SamplerParams *params, Sampler *s)
{
    Error err;
    cr_assert_eq(sampler_init(s, params, st->tok.n_vocab, &err), 0, "%s", err.msg);
    cr_assert_eq(sampler_set_grammar(s, &st->g, &st->tok, &err), 0, "%s", err.msg);
}

/* A context of n + 2 positions to decode st's model in. */
static void context_open(const Stories *st, int n, InferContext *ctx)
{
    Error err;
    InferParams ip = {.n_seq = 1, .n_ctx = n + 2, .cache_type = GGML_TYPE_F32};
    cr_assert_eq(infer_init(ctx, &st->m, &ip, &err), 0, "%s", err.msg);
}

/* One generation of at most n tokens with the grammar and the speedups given; returns the
 * tokens chosen (into out) and adds the sampler's path counts to *survivor and *masked.
 * With `whole_list` each token comes from sampler_apply's list (what quill generate uses, for
 * log-probabilities) and p[i] is its probability there; otherwise from sampler_sample. */
static int generate(const Stories *st, const SamplerParams *params,
                    SamplerGrammarSpeedups speedups, bool whole_list, int n, int *out, float *p,
                    long *survivor, long *masked)
{
    CandidateList list;
    Error err;
    Sampler s;
    InferContext ctx;
    sampler_with_grammar(st, params, &s);
    context_open(st, n, &ctx);
    sampler_grammar_speedups(&s, speedups);
    cr_assert_eq(candidates_init(&list, st->tok.n_vocab, &err), 0, "%s", err.msg);
    const Tokenizer *tok = &st->tok;
    int token = tok->bos_id, count = 0;
    while (count < n) {
        cr_assert_eq(infer_decode(&ctx, 0, &token, 1, &err), 0, "%s", err.msg);
        p[count] = 0.0f;
        if (whole_list) {
            sampler_apply(&s, infer_logits(&ctx, 0), &list);
            token = sampler_select(&s, &list);
            for (int i = 0; i < list.n; i++)
                if (list.data[i].id == token)
                    p[count] = list.data[i].p;
        } else {
            token = sampler_sample(&s, infer_logits(&ctx, 0));
        }
        out[count++] = token;
        if (token == tok->eos_id)
            break;
        cr_assert_eq(sampler_accept(&s, token, false, &err), 0, "%s", err.msg);
    }
    *survivor += s.grammar->survivor_steps;
    *masked += s.grammar->masked_steps;
    infer_free(&ctx);
    candidates_free(&list);
    sampler_free(&s);
    return count;
}

/* The chains a seed runs under, in turn: llama.cpp's defaults (top-k 40 first: the
 * survivors decide), greedy with no cut (the first allowed candidate decides), top-p alone
 * at temperature 1.2 (no top-k: the whole vocabulary is masked), and penalties and a bias
 * before top-k 10 (the survivors, after stages that change each logit on its own). */
static void chain_for_seed(int seed, SamplerParams *p)
{
    Error err;
    sampler_params_default(p);
    p->seed = (uint64_t)seed;
    switch (seed % 4) {
    case 1: cr_assert_eq(sampler_preset("deterministic", p, &err), 0); break;
    case 2:
        cr_assert_eq(sampler_chain_parse("top-p,temperature", p, &err), 0);
        p->temperature = 1.2f;
        break;
    case 3:
        p->top_k = 10;
        p->repeat_penalty = 1.3f;
        p->presence_penalty = 0.5f;
        break;
    default: break;
    }
}

/* stories260K, 50 seeds, 48 tokens at most under the JSON grammar: each combination of
 * speedups chooses the same tokens as the plain reference, by sampler_sample and, every
 * other four seeds, by sampler_apply's list (each token then with the same probability, to
 * the bit). The counts make sure that both the survivors and the whole-vocabulary masks were
 * used. */
Test(grammar_speed, fast_paths_choose_the_plain_paths_tokens, .timeout = 300)
{
    SHARED_FILE_OR_SKIP(path, "models/stories260K.gguf");
    Stories st;
    stories_open(&st, path, JSON_GRAMMAR);
    const SamplerGrammarSpeedups fast[] = {{true, false}, {false, true}, {true, true}};
    enum { N = 48 };
    int plain[N], other[N], compared = 0;
    float plain_p[N], other_p[N];
    long survivor = 0, masked = 0, plain_survivor = 0, plain_masked = 0;
    for (int seed = 1; seed <= 50; seed++) {
        SamplerParams p;
        chain_for_seed(seed, &p);
        bool whole_list = seed / 4 % 2 == 1;
        int n = generate(&st, &p, (SamplerGrammarSpeedups){false, false}, whole_list, N, plain,
                         plain_p, &plain_survivor, &plain_masked);
        for (int f = 0; f < 3; f++) {
            int n_other = generate(&st, &p, fast[f], whole_list, N, other, other_p, &survivor,
                                   &masked);
            cr_assert_eq(n_other, n, "seed %d, speedups %d%d: %d tokens, plain %d", seed,
                         fast[f].survivors_first, fast[f].trie, n_other, n);
            for (int i = 0; i < n; i++)
                cr_assert_eq(other[i], plain[i], "seed %d, speedups %d%d, token %d: %d, plain %d",
                             seed, fast[f].survivors_first, fast[f].trie, i, other[i], plain[i]);
            cr_assert_eq(memcmp(other_p, plain_p, (size_t)n * sizeof *plain_p), 0,
                         "seed %d: the probabilities differ", seed);
            compared += n;
        }
    }
    cr_log_info("%d tokens compared; %ld steps by the survivors, %ld masked", compared, survivor,
                masked);
    cr_assert_gt(compared, 3 * 50 * 8, "only %d tokens compared", compared);
    cr_assert_eq(plain_survivor, 0, "the reference took the shortcut");
    cr_assert_gt(survivor, compared / 10, "the survivors decided only %ld steps", survivor);
    cr_assert_gt(masked, compared / 10, "only %ld steps masked the vocabulary", masked);
    stories_close(&st);
}

/* --show-probs traces the sample, which always masks the whole vocabulary: each stage's
 * list is the masked chain's. Over 20 seeds on stories260K the traced sampler chooses the
 * same tokens as the untraced one (which takes the shortcut), every candidate a trace shows
 * is one the grammar allows, and each stage's count is at most the number allowed. */
Test(grammar_speed, traced_samples_show_the_masked_chain, .timeout = 120)
{
    SHARED_FILE_OR_SKIP(path, "models/stories260K.gguf");
    Stories st;
    stories_open(&st, path, STORY_GRAMMAR);
    const Tokenizer *tok = &st.tok;
    Error err;
    enum { N = 32 };
    bool *allowed = malloc((size_t)tok->n_vocab * sizeof *allowed);
    cr_assert_not_null(allowed);
    int shown = 0;
    long survivor = 0;
    for (int seed = 1; seed <= 20; seed++) {
        SamplerParams p;
        sampler_params_default(&p);
        p.seed = (uint64_t)seed;
        Sampler traced, fast;
        InferContext ctx;
        sampler_with_grammar(&st, &p, &traced);
        sampler_with_grammar(&st, &p, &fast);
        context_open(&st, N, &ctx);
        int token = tok->bos_id;
        for (int i = 0; i < N && token != tok->eos_id; i++) {
            cr_assert_eq(infer_decode(&ctx, 0, &token, 1, &err), 0, "%s", err.msg);
            grammar_vocab_mask_plain(&traced.grammar->shared->vocab, &traced.grammar->matcher, allowed);
            int n_allowed = 0;
            for (int t = 0; t < tok->n_vocab; t++)
                n_allowed += allowed[t];
            SamplerTrace trace;
            token = sampler_sample_traced(&traced, infer_logits(&ctx, 0), &trace);
            int untraced = sampler_sample(&fast, infer_logits(&ctx, 0));
            cr_assert_eq(token, untraced, "seed %d step %d: traced %d, untraced %d", seed, i,
                         token, untraced);
            for (int j = 0; j < trace.n_steps; j++) {
                const SamplerTraceStep *step = &trace.steps[j];
                cr_assert_leq(step->n, n_allowed, "seed %d step %d: %s shows %d of %d", seed, i,
                              step->stage, step->n, n_allowed);
                for (int k = 0; k < step->n_top; k++, shown++)
                    cr_assert(allowed[step->top[k].id], "seed %d step %d: %s shows %d", seed, i,
                              step->stage, step->top[k].id);
            }
            if (token != tok->eos_id) {
                cr_assert_eq(sampler_accept(&traced, token, false, &err), 0, "%s", err.msg);
                cr_assert_eq(sampler_accept(&fast, token, false, &err), 0, "%s", err.msg);
            }
        }
        survivor += fast.grammar->survivor_steps;
        cr_assert_eq(traced.grammar->survivor_steps, 0, "a traced sample took the shortcut");
        infer_free(&ctx);
        sampler_free(&traced);
        sampler_free(&fast);
    }
    cr_log_info("%d traced candidates shown; %ld untraced steps by the survivors", shown,
                survivor);
    cr_assert_gt(shown, 20 * 8, "only %d candidates shown", shown);
    cr_assert_gt(survivor, 20, "the untraced sampler took the shortcut %ld times", survivor);
    free(allowed);
    stories_close(&st);
}

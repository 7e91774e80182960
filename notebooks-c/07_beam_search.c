/* Notebook 7: beam search, step by step, as a tree.
 *
 * Greedy decoding takes the most probable token at every step, which is not the same as
 * the most probable text: a likely first word can lead only to unlikely continuations.
 * Beam search keeps the B most probable partial texts ("beams"): at each step every beam
 * offers its likeliest next tokens, and of all those extensions the B with the highest
 * total log-probability
 *
 *     sum = ln p(token 1) + ln p(token 2 | token 1) + ...
 *
 * survive. Every beam needs its own KV cache (here: its own sequence of the inference
 * context), copied from its parent's when beams branch.
 *
 * A sum of log-probabilities only falls as a text grows (each ln p < 0), so comparing
 * texts of different lengths favours the short ones. When beams end (an end-of-text
 * token), quill ranks them by the length-normalised score (Wu et al. 2016, GNMT, in its
 * simplest form)
 *
 *     score = sum / length^alpha       alpha = 0: the plain sum; alpha = 1: the mean
 *
 * Part 1 runs a small search by hand with quill's inference API and prints it as a tree,
 * then checks it against the library's beam_search (src/beam.h). Part 2 shows what
 * alpha does, first on the tree, then in a real search where a sentence ends at ".".
 *
 * Build and run:  make notebooks   (or: build/release/notebooks/07_beam_search [MODEL.gguf])
 * (default: ../shared/models/stories260K.gguf, a 260K-parameter model of children's
 * stories; any GGUF llama model works, e.g. a `quill train` run's model.gguf). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "beam.h"
#include "candidates.h"
#include "infer.h"
#include "loader.h"

enum { WIDTH = 3, STEPS = 5, MAX_NODES = 1 + WIDTH * STEPS };
static const char PROMPT[] = "Once upon a time";

/* One node of the search tree: a beam as it was after one step. */
typedef struct {
    int parent; /* node index, -1 for the prompt */
    int token;
    int depth;  /* tokens after the prompt */
    double logp, sum;
} Node;

typedef struct {
    const Model *model;
    const Tokenizer *tok;
    InferContext ctx;
    Node nodes[MAX_NODES];
    int n_nodes;
    int beams[WIDTH]; /* the live beams: node indices */
    int n_beams;
    int n_prompt;
} Search;

/* An extension: beam b's node, followed by token. */
typedef struct {
    int beam;
    int token;
    double logp, sum;
} Extension;

static void check(int status, const Error *err)
{
    if (status != 0) {
        fprintf(stderr, "%s\n", err->msg);
        exit(1);
    }
}

static void print_token(const Tokenizer *tok, int id)
{
    char bytes[64];
    size_t n = tokenizer_token_bytes(tok, id, bytes, sizeof bytes);
    printf("'%.*s'", (int)(n < sizeof bytes ? n : sizeof bytes), bytes);
}

/* A node's text: its tokens from the prompt on. */
static void print_node_text(const Search *s, int node)
{
    int path[STEPS + 1], n = 0;
    for (int i = node; i > 0; i = s->nodes[i].parent)
        path[n++] = s->nodes[i].token;
    printf("\"");
    while (n > 0) {
        char bytes[64];
        size_t len = tokenizer_token_bytes(s->tok, path[--n], bytes, sizeof bytes);
        printf("%.*s", (int)(len < sizeof bytes ? len : sizeof bytes), bytes);
    }
    printf("\"");
}

static int compare_extensions(const void *a, const void *b)
{
    const Extension *x = a, *y = b;
    return x->sum > y->sum ? -1 : x->sum < y->sum ? 1 : 0;
}

/* Beam b's 2B likeliest next tokens: ln p = logit - log Z, with log Z over the whole
 * vocabulary (candidates_softmax returns it) before top-k keeps the best. 2B, so that B
 * survive even if every beam's best ones collide. */
static int beam_extensions(Search *s, int b, CandidateList *c, Extension *out)
{
    const Node *node = &s->nodes[s->beams[b]];
    candidates_fill(c, infer_logits(&s->ctx, b), s->model->config.vocab_size);
    double log_z = candidates_softmax(c);
    candidates_top_k(c, 2 * WIDTH);
    for (int i = 0; i < c->n; i++) {
        double logp = c->data[i].logit - log_z;
        out[i] = (Extension){b, c->data[i].id, logp, node->sum + logp};
    }
    return c->n;
}

/* One step: rank every beam's extensions, keep the best B as new beams. Beams live in
 * sequences 0..B-1 and B..2B-1 by turns: each new beam gets a copy of its parent's cache,
 * then all B new tokens run through the model in one forward pass. (The library keeps one
 * sequence per beam and copies only what differs: src/beam.c.) */
static void search_step(Search *s, int step, CandidateList *c)
{
    Extension ext[WIDTH * 2 * WIDTH];
    int n_ext = 0;
    for (int b = 0; b < s->n_beams; b++)
        n_ext += beam_extensions(s, b, c, ext + n_ext);
    qsort(ext, (size_t)n_ext, sizeof *ext, compare_extensions);
    int from = (step % 2) * WIDTH, to = WIDTH - from, seqs[WIDTH], tokens[WIDTH], next[WIDTH];
    for (int i = 0; i < WIDTH; i++) {
        const Extension *e = &ext[i];
        int parent = s->beams[e->beam];
        s->nodes[s->n_nodes] = (Node){parent, e->token, s->nodes[parent].depth + 1, e->logp,
                                      e->sum};
        next[i] = s->n_nodes++;
        seqs[i] = to + i;
        tokens[i] = e->token;
        infer_seq_copy(&s->ctx, from + e->beam, to + i, 0);
    }
    memcpy(s->beams, next, sizeof next);
    s->n_beams = WIDTH;
    Error err;
    check(infer_decode_step(&s->ctx, seqs, tokens, WIDTH, &err), &err);
}

/* The tree, depth first: each node with its token, ln p and the running sum; a node with
 * no children before the last step was pruned. */
static void print_tree(const Search *s, int node, int depth)
{
    for (int child = 1; child < s->n_nodes; child++) {
        if (s->nodes[child].parent != node)
            continue;
        const Node *n = &s->nodes[child];
        bool has_children = false;
        for (int i = child + 1; i < s->n_nodes; i++)
            has_children |= s->nodes[i].parent == child;
        printf("  %*s+- ", 3 * depth, "");
        print_token(s->tok, n->token);
        printf("  ln p %6.3f  sum %7.3f%s\n", n->logp, n->sum,
               !has_children && n->depth < STEPS ? "   (pruned)" : "");
        print_tree(s, child, depth + 1);
    }
}

/* Part 1: the search by hand; returns the node of the best final beam. */
static int search_by_hand(Search *s, const int *prompt, int n_prompt)
{
    InferParams params = {.n_seq = 2 * WIDTH, .n_ctx = n_prompt + STEPS + 1};
    Error err;
    CandidateList c;
    check(infer_init(&s->ctx, s->model, &params, &err) ||
              candidates_init(&c, s->model->config.vocab_size, &err) ||
              infer_decode(&s->ctx, 0, prompt, n_prompt, &err),
          &err);
    s->nodes[0] = (Node){.parent = -1};
    s->n_nodes = 1;
    s->beams[0] = 0;
    s->n_beams = 1;
    for (int step = 0; step < STEPS; step++)
        search_step(s, step, &c);
    candidates_free(&c);
    infer_free(&s->ctx);
    int best = s->beams[0];
    for (int b = 1; b < s->n_beams; b++)
        if (s->nodes[s->beams[b]].sum > s->nodes[best].sum)
            best = s->beams[b];
    return best;
}

/* The library's beam search after the prompt: the n_best hypotheses into out. */
static int library_beam_search(const Model *m, const Tokenizer *tok, const int *prompt,
                               int n_prompt, int max_tokens, float alpha, int n_best,
                               Completion *out)
{
    SessionParams p;
    session_params_default(&p);
    p.n_seq = WIDTH;
    p.n_ctx = n_prompt + max_tokens + 1;
    p.cache_type = kv_cache_type_default(m->file); /* as quill generate uses */
    p.max_tokens = max_tokens;
    Session session;
    Error err;
    int n_out;
    check(session_init(&session, m, tok, &p, &err) ||
              session_feed(&session, prompt, n_prompt, &err) ||
              beam_search(&session, WIDTH, alpha, n_best, NULL, out, &n_out, &err),
          &err);
    session_free(&session);
    return n_out;
}

/* Part 2a: if the text could end after any node of the tree, which would win? */
static void rank_nodes_by_length_penalty(const Search *s)
{
    static const float alphas[] = {0.0f, 0.5f, 1.0f};
    for (int a = 0; a < 3; a++) {
        int best = 1;
        double best_score = -INFINITY;
        for (int i = 1; i < s->n_nodes; i++) {
            double score = s->nodes[i].sum / pow(s->nodes[i].depth, alphas[a]);
            if (score > best_score) {
                best_score = score;
                best = i;
            }
        }
        printf("  alpha %.1f: best is %d tokens, score %.3f: ", alphas[a], s->nodes[best].depth,
               best_score);
        print_node_text(s, best);
        printf("\n");
    }
}

/* Part 2b: a real search that ends sentences. The session is told that "." is the
 * end-of-text token, so hypotheses finish at different lengths. */
static void sentence_search(const Model *m, const Tokenizer *tok, const int *prompt,
                            int n_prompt)
{
    Tokenizer sentences = *tok; /* a shallow copy: only eos_id differs; never freed */
    sentences.eos_id = tokenizer_lookup(tok, ".", 1);
    if (sentences.eos_id < 0) {
        printf("  (this vocabulary has no \".\" token: part 2b skipped)\n");
        return;
    }
    static const float alphas[] = {0.0f, 1.0f};
    for (int a = 0; a < 2; a++) {
        Completion best[WIDTH];
        int n = library_beam_search(m, &sentences, prompt, n_prompt, 40, alphas[a], WIDTH, best);
        printf("  alpha %.0f:\n", alphas[a]);
        for (int i = 0; i < n; i++) {
            printf("    %d tokens, score %7.3f, %-6s \"%s\"\n", best[i].n_tokens, best[i].score,
                   finish_reason_name(best[i].finish), best[i].text);
            completion_free(&best[i]);
        }
    }
}

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : "../shared/models/stories260K.gguf";
    Model model;
    Tokenizer tok;
    Error err;
    if (model_file_load(path, &model, &tok, &err) != 0) {
        printf("missing model, nothing to run: %s\n(give a GGUF file: 07_beam_search MODEL.gguf)\n",
               err.msg);
        return 0;
    }
    int *prompt;
    size_t n_prompt;
    check(tokenizer_encode(&tok, PROMPT, strlen(PROMPT), tok.add_bos, &prompt, &n_prompt, &err),
          &err);

    Search s = {.model = &model, .tok = &tok};
    int best = search_by_hand(&s, prompt, (int)n_prompt);
    printf("1. beam search by hand, width %d, %d steps, after \"%s\":\n\n  \"%s\"\n", WIDTH,
           STEPS, PROMPT, PROMPT);
    print_tree(&s, 0, 0);
    printf("\n  best beam (sum %.3f): ", s.nodes[best].sum);
    print_node_text(&s, best);

    Completion lib[1];
    library_beam_search(&model, &tok, prompt, (int)n_prompt, STEPS, 0.0f, 1, lib);
    bool same = lib[0].n_tokens == STEPS;
    for (int i = best, t = STEPS - 1; same && i > 0; i = s.nodes[i].parent, t--)
        same = lib[0].tokens[t] == s.nodes[i].token;
    printf("\n  the library's beam_search (width %d, %d tokens): \"%s\", sum %.3f\n"
           "  same best text as by hand: %s\n\n",
           WIDTH, STEPS, lib[0].text, lib[0].score, same ? "yes" : "NO");
    completion_free(&lib[0]);

    printf("2a. if the text could end after any node of the tree, which would win?\n");
    rank_nodes_by_length_penalty(&s);
    printf("\n2b. the library's search, width %d, with \".\" as the end of the text:\n", WIDTH);
    sentence_search(&model, &tok, prompt, (int)n_prompt);

    printf("\nThe \".\" ends each hypothesis and is not part of its text. With alpha 0 the\n"
           "shortest text wins whenever texts of several lengths compete: every token costs\n"
           "probability. Dividing by length^alpha compares them per token, and with alpha 1 a\n"
           "longer sentence can make the top %d.\n"
           "Try this: set WIDTH to 1: the tree becomes a single path, and beam search is\n"
           "greedy decoding (quill's tests check exactly that).\n",
           WIDTH);
    free(prompt);
    tokenizer_free(&tok);
    model_free(&model);
    return 0;
}

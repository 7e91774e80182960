#include "beam.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "must_include.h"
#include "stream.h"
#include "timer.h"

/* A partial text being extended. */
typedef struct {
    int slot;          /* its KV cache slot */
    double sum;        /* the log-probability of its tokens */
    Completion c;      /* its tokens, and the bytes its stream has decided */
    TextStream stream; /* its text on the way into c: a stop string ends the beam */
    int write_status;  /* 0, or -1 when the stream's bytes did not fit in memory */
    Sampler sampler;   /* its own history, for the penalties and bad words */
    uint64_t met;      /* the words that must appear that its text holds */
} Beam;

/* A beam stream's sink: the decided bytes, into the beam's text. */
static void beam_write(void *beam, const char *bytes, size_t n)
{
    Beam *b = beam;
    Error unused;
    if (b->write_status == 0)
        b->write_status = completion_add_text(&b->c, bytes, n, &unused);
}

static void beam_free(Beam *b)
{
    completion_free(&b->c);
    text_stream_free(&b->stream);
    sampler_free(&b->sampler);
}

/* dst's tokens, text and stream become copies of src's. */
static int beam_copy_text(Beam *dst, const Beam *src, Error *err)
{
    for (int i = 0; i < src->c.n_tokens; i++)
        if (completion_add_token(&dst->c, src->c.tokens[i], err) != 0)
            return -1;
    if (completion_add_text(&dst->c, src->c.text ? src->c.text : "", src->c.len, err) != 0)
        return -1;
    return text_stream_copy(&dst->stream, &src->stream, beam_write, dst, err);
}

/* The beam's text with the bytes its stream still holds back (a possible stop string's
 * start, an unfinished character): the text of a hypothesis that ends here. */
static int beam_finish_text(Beam *b, Error *err)
{
    text_stream_finish(&b->stream);
    return b->write_status == 0 ? 0 : error_set(err, "out of memory for a beam's text");
}

/* One way to extend a beam: its parent, the token, the total after it; with words that
 * must appear, the words met after it and its progress towards them (its bank). */
typedef struct {
    int parent;
    int token;
    double sum;
    uint64_t met;
    int progress;
} Extension;

typedef struct {
    Session *s;
    int width;         /* B */
    float alpha;       /* the length penalty */
    int n_best;
    Beam *beams, *next; /* the live beams, and the next step's (B each) */
    int n_beams;
    Completion *best;  /* finished hypotheses, best first, at most n_best */
    int n_best_found;
    const MustInclude *must; /* words that must appear, or NULL */
    Extension *ext;    /* B * (2B + the words' spellings) extensions per step */
    Extension *dealt;  /* as many: ext dealt round the banks (deal_into_banks) */
    int *forced;       /* a beam's tokens that go on with the words (one per spelling) */
    int *bank;         /* where each bank starts in ext (one per progress value) */
    CandidateList cand;
    int steps, decoded; /* for --verbose: steps taken, tokens run through the model */
} BeamSearch;

static int compare_extensions(const void *a, const void *b)
{
    const Extension *x = a, *y = b;
    if (x->sum != y->sum)
        return x->sum > y->sum ? -1 : 1;
    if (x->parent != y->parent)
        return x->parent - y->parent;
    return x->token - y->token;
}

static double hypothesis_score(double sum, int length, float alpha)
{
    return alpha == 0.0f || length == 0 ? sum : sum / pow((double)length, alpha);
}

/* Whether a hypothesis ranks above one kept: fewer words that must appear missing first,
 * then the higher score. */
static bool ranks_above(const Completion *c, const Completion *kept)
{
    int missing = __builtin_popcountll(c->missed);
    int kept_missing = __builtin_popcountll(kept->missed);
    return missing != kept_missing ? missing < kept_missing : c->score > kept->score;
}

/* Keeps a finished hypothesis if it is among the n_best so far. */
static int finished_add(BeamSearch *bs, const Beam *done, double score, FinishReason why,
                        Error *err)
{
    Beam ended = {0};
    int status = beam_copy_text(&ended, done, err);
    if (status == 0)
        status = beam_finish_text(&ended, err);
    text_stream_free(&ended.stream);
    ended.c.score = score;
    if (status == 0 && bs->must)
        ended.c.missed = bs->must->all & ~must_include_found(bs->must, ended.c.text, ended.c.len);
    int at = bs->n_best_found;
    while (status == 0 && at > 0 && ranks_above(&ended.c, &bs->best[at - 1]))
        at--;
    if (status != 0 || at >= bs->n_best) {
        completion_free(&ended.c);
        return status;
    }
    if (bs->n_best_found == bs->n_best)
        completion_free(&bs->best[--bs->n_best_found]);
    memmove(&bs->best[at + 1], &bs->best[at], (size_t)(bs->n_best_found - at) * sizeof *bs->best);
    bs->n_best_found++;
    bs->best[at] = ended.c;
    bs->best[at].finish = why;
    bs->best[at].seed = bs->s->params.sampler.seed;
    return 0;
}

/* Beam b extended by candidate c. With words that must appear: the words met after it and
 * its progress; an end of text has the most progress when every word is in the text, and
 * none (-1: it is dropped) when one is missing, since it would end the text without it. */
static Extension extension_of(const BeamSearch *bs, int b, const Candidate *c)
{
    const Beam *beam = &bs->beams[b];
    Extension e = {b, c->id, beam->sum + log(c->p), beam->met, 0};
    if (!bs->must)
        return e;
    if (session_token_ends_text(bs->s, c->id))
        e.progress = beam->met == bs->must->all ? bs->must->max_progress : -1;
    else
        e.progress = must_include_progress(bs->must, bs->s->tok, beam->c.tokens,
                                           beam->c.n_tokens, c->id, &e.met);
    return e;
}

/* Beam b's extensions that go on with a spelling of a word it has not met, however
 * unlikely, past the `taken` likeliest candidates already collected (a banned token, p = 0,
 * stays out). */
static void forced_extensions(BeamSearch *bs, int b, int taken, int *n_ext)
{
    const Beam *beam = &bs->beams[b];
    int n = must_include_next_tokens(bs->must, beam->met, beam->c.tokens, beam->c.n_tokens,
                                     bs->forced);
    for (int j = taken; j < bs->cand.n && n > 0; j++) {
        const Candidate *c = &bs->cand.data[j];
        int f = 0;
        while (f < n && bs->forced[f] != c->id)
            f++;
        if (f == n)
            continue;
        bs->forced[f] = bs->forced[--n];
        if (c->p > 0.0f)
            bs->ext[(*n_ext)++] = extension_of(bs, b, c);
    }
}

/* Every beam's likeliest extensions (2B each: enough that B survive whatever ends), and
 * with words that must appear, those that go on with the words. */
static int collect_extensions(BeamSearch *bs, int *n_ext)
{
    *n_ext = 0;
    for (int b = 0; b < bs->n_beams; b++) {
        sampler_apply(&bs->beams[b].sampler, infer_logits(bs->s->ctx, b), &bs->cand);
        int j = 0;
        for (; j < bs->cand.n && j < 2 * bs->width && bs->cand.data[j].p > 0.0f; j++)
            bs->ext[(*n_ext)++] = extension_of(bs, b, &bs->cand.data[j]);
        if (bs->must)
            forced_extensions(bs, b, j, n_ext);
    }
    qsort(bs->ext, (size_t)*n_ext, sizeof *bs->ext, compare_extensions);
    return 0;
}

/* Most progress first, then as compare_extensions ranks them. */
static int compare_banks(const void *a, const void *b)
{
    const Extension *x = a, *y = b;
    if (x->progress != y->progress)
        return x->progress > y->progress ? -1 : 1;
    return compare_extensions(a, b);
}

/* Dynamic beam allocation (Post & Vilar 2018): the ranked extensions are put in banks by
 * their progress towards the words that must appear, and dealt round the banks, most
 * progress first, each bank giving its best extension not dealt yet, round after round;
 * choose_next takes the first B of that order. So the B places are shared evenly among the
 * banks that have extensions, the places one cannot fill going to the others, and a beam
 * that has gone some way towards a word is not pushed out by likelier ones that have not.
 * The dropped ends of text (progress -1) are left out. */
static void deal_into_banks(BeamSearch *bs, int *n_ext)
{
    qsort(bs->ext, (size_t)*n_ext, sizeof *bs->ext, compare_banks);
    int n_banks = 0, n_dealt = 0, end = 0; /* end: past the last bank */
    for (; end < *n_ext && bs->ext[end].progress >= 0; end++)
        if (end == 0 || bs->ext[end].progress != bs->ext[end - 1].progress)
            bs->bank[n_banks++] = end;
    for (int round = 0, dealt = 1; dealt; round++) {
        dealt = 0;
        for (int k = 0; k < n_banks; k++) {
            int at = bs->bank[k] + round, bank_end = k + 1 < n_banks ? bs->bank[k + 1] : end;
            if (at < bank_end) {
                bs->dealt[n_dealt++] = bs->ext[at];
                dealt = 1;
            }
        }
    }
    Extension *ranked = bs->ext;
    bs->ext = bs->dealt;
    bs->dealt = ranked;
    *n_ext = n_dealt;
}

/* The child: its parent's tokens, text and stream, and one more token, its bytes pushed
 * through the stream. Returns 1 when they complete a stop string (the child's text is then
 * the text before it), 0 otherwise, -1 on error. */
static int beam_extend(Beam *child, const Beam *parent, const Tokenizer *tok, int token,
                       Error *err)
{
    char piece[256];
    size_t len = tokenizer_token_bytes(tok, token, piece, sizeof piece);
    if (beam_copy_text(child, parent, err) != 0 || completion_add_token(&child->c, token, err) != 0)
        return -1;
    int stopped = text_stream_push(&child->stream, piece, len < sizeof piece ? len : sizeof piece,
                                   err);
    if (stopped >= 0 && child->write_status != 0)
        return error_set(err, "out of memory for a beam's text");
    return stopped;
}

/* A child that goes on: its parent's sum and sampler with the token accepted; its slot is
 * "child of beam parent" (-2 - parent) until assign_slots gives it one. */
static int child_continue(Beam *child, const Beam *parent, const Extension *e, Error *err)
{
    child->sum = e->sum;
    child->met = e->met;
    child->slot = -2 - e->parent;
    if (sampler_clone(&child->sampler, &parent->sampler, err) != 0)
        return -1;
    return sampler_accept(&child->sampler, e->token, false, err);
}

/* The next step's beams from the ranked extensions. An extension that ends the text (the
 * end-of-text token, or a token that completes a stop string) finishes a hypothesis when
 * it is among the first B ranks, its score that of the text up to there (the stop string
 * cut off, its tokens kept, as a sampled text keeps them); the B best others go on. */
static int choose_next(BeamSearch *bs, int n_ext, int *n_next, Error *err)
{
    const Session *s = bs->s;
    *n_next = 0;
    for (int rank = 0; rank < n_ext && *n_next < bs->width; rank++) {
        const Extension *e = &bs->ext[rank];
        const Beam *parent = &bs->beams[e->parent];
        bool counts = rank < bs->width;
        Beam *child = &bs->next[*n_next];
        memset(child, 0, sizeof *child);
        if (session_token_ends_text(s, e->token)) {
            double score = hypothesis_score(e->sum, parent->c.n_tokens, bs->alpha);
            int status = counts ? finished_add(bs, parent, score, FINISH_EOS, err) : 0;
            if (status != 0)
                return -1;
            continue;
        }
        int stopped = beam_extend(child, parent, s->tok, e->token, err);
        if (stopped == 1) {
            double score = hypothesis_score(e->sum, child->c.n_tokens, bs->alpha);
            bool complete = !bs->must || e->met == bs->must->all; /* else dropped */
            stopped = counts && complete ? finished_add(bs, child, score, FINISH_STOP, err) : 0;
            beam_free(child);
            if (stopped != 0)
                return -1;
            continue;
        }
        if (stopped == 0)
            stopped = child_continue(child, parent, e, err);
        if (stopped != 0) {
            beam_free(child);
            return -1;
        }
        (*n_next)++;
    }
    return 0;
}

/* Gives each next beam a cache slot: a parent's first child keeps the parent's slot; the
 * other children take the slots of parents with no children and copy the parent's cache
 * there, from the end of the prompt on (every slot holds the prompt). */
static void assign_slots(BeamSearch *bs, int n_next, int n_prompt)
{
    int width = bs->width, children[64] = {0}, free_slots[64], n_free = 0;
    bool used[64] = {false};
    for (int i = 0; i < n_next; i++)
        children[-2 - bs->next[i].slot]++;
    for (int b = 0; b < bs->n_beams; b++)
        used[bs->beams[b].slot] = children[b] > 0;
    for (int slot = 0; slot < width; slot++)
        if (!used[slot])
            free_slots[n_free++] = slot;
    bool kept[64] = {false};
    for (int i = 0; i < n_next; i++) {
        int parent = -2 - bs->next[i].slot, parent_slot = bs->beams[parent].slot;
        if (!kept[parent]) {
            kept[parent] = true;
            bs->next[i].slot = parent_slot;
        } else {
            bs->next[i].slot = free_slots[--n_free];
            infer_seq_copy(bs->s->ctx, parent_slot, bs->next[i].slot, n_prompt);
        }
    }
}

static void beams_free(Beam *beams, int n)
{
    for (int b = 0; b < n; b++)
        beam_free(&beams[b]);
}

/* True when no open beam can reach the score of the n_best-th finished one: a beam's sum
 * only falls, and with alpha > 0 its best hope is the longest length a text can reach. */
static bool search_done(const BeamSearch *bs, int longest)
{
    if (bs->n_best_found < bs->n_best)
        return false;
    double worst_kept = bs->best[bs->n_best_found - 1].score;
    for (int b = 0; b < bs->n_beams; b++) {
        int length = bs->alpha > 0.0f ? longest : bs->beams[b].c.n_tokens;
        if (hypothesis_score(bs->beams[b].sum, length, bs->alpha) > worst_kept)
            return false;
    }
    return true;
}

/* One step: extend, choose, move the caches, and (unless it is the last step, or the
 * context is full) run the B new tokens in one pass. */
static int beam_step(BeamSearch *bs, int n_prompt, bool decode, Error *err)
{
    int n_ext, n_next;
    if (collect_extensions(bs, &n_ext) != 0)
        return -1;
    if (bs->must)
        deal_into_banks(bs, &n_ext);
    if (choose_next(bs, n_ext, &n_next, err) != 0)
        return -1;
    assign_slots(bs, n_next, n_prompt);
    beams_free(bs->beams, bs->n_beams);
    Beam *old = bs->beams;
    bs->beams = bs->next;
    bs->next = old;
    bs->n_beams = n_next;
    bs->steps++;
    if (n_next == 0 || !decode)
        return 0;
    bs->decoded += n_next;
    int slots[64], tokens[64];
    for (int b = 0; b < n_next; b++) {
        slots[b] = bs->beams[b].slot;
        tokens[b] = bs->beams[b].c.tokens[bs->beams[b].c.n_tokens - 1];
    }
    return infer_decode_step(bs->s->ctx, slots, tokens, n_next, err);
}

/* The sampler every beam starts from: the session's chain without its truncating filters
 * and without temperature, so that its probabilities are the model's under the bias, bans
 * and penalties. */
static int root_beam(BeamSearch *bs, Error *err)
{
    Session *s = bs->s;
    SamplerParams params = s->params.sampler;
    params.n_chain = 0;
    for (int i = 0; i < s->params.sampler.n_chain; i++) {
        SamplerStage st = s->params.sampler.chain[i];
        if (st == SAMPLER_STAGE_LOGIT_BIAS || st == SAMPLER_STAGE_BAD_WORDS ||
            st == SAMPLER_STAGE_PENALTIES)
            params.chain[params.n_chain++] = st;
    }
    params.temperature = 0.0f;
    Beam *root = &bs->beams[0];
    bs->n_beams = 1;
    root->slot = 0;
    text_stream_init(&root->stream, s->params.stops, s->params.n_stops, beam_write, root);
    return session_sampler_init(s, &params, &root->sampler, err);
}

int beam_search(Session *s, int beam_size, float length_penalty, int n_best,
                const MustInclude *must, Completion *out, int *n_out, Error *err)
{
    *n_out = 0;
    if (beam_size > 64 || n_best > 64)
        return error_set(err, "beam search keeps at most 64 beams");
    BeamSearch bs = {.s = s, .width = beam_size, .alpha = length_penalty, .n_best = n_best,
                     .must = must && must->n > 0 ? must : NULL};
    int n_spellings = bs.must ? bs.must->n_spellings : 0;
    size_t n_ext_max = (size_t)beam_size * (2 * (size_t)beam_size + (size_t)n_spellings);
    bs.beams = calloc((size_t)beam_size, sizeof *bs.beams);
    bs.next = calloc((size_t)beam_size, sizeof *bs.next);
    bs.best = calloc((size_t)n_best, sizeof *bs.best);
    bs.ext = malloc(n_ext_max * sizeof *bs.ext);
    bool constrained = bs.must != NULL;
    if (constrained) {
        bs.dealt = malloc(n_ext_max * sizeof *bs.dealt);
        bs.forced = malloc(((size_t)n_spellings + 1) * sizeof *bs.forced);
        bs.bank = malloc(((size_t)bs.must->max_progress + 2) * sizeof *bs.bank);
    }
    int n_prompt = infer_seq_length(s->ctx, 0);
    int status = bs.beams && bs.next && bs.best && bs.ext &&
                         (!constrained || (bs.dealt && bs.forced && bs.bank))
                     ? 0
                     : error_set(err, "out of memory");
    if (status == 0)
        status = candidates_init(&bs.cand, s->model->config.vocab_size, err);
    if (status == 0)
        status = root_beam(&bs, err);
    for (int slot = 1; status == 0 && slot < beam_size; slot++)
        infer_seq_copy(s->ctx, 0, slot, 0); /* the prompt, into every slot once */
    /* the longest a text can be: max_tokens, or what the context holds after the prompt,
     * and one more from the last logits, as a sampled text takes */
    int max_tokens = s->params.max_tokens, room = s->params.n_ctx - n_prompt + 1;
    int longest = max_tokens < room ? max_tokens : room;
    double start = timer_seconds();
    bool settled = false, last = false, full = false;
    for (int step = 0; status == 0 && !settled && !last && step < max_tokens && bs.n_beams > 0;
         step++) {
        bool at_max = step + 1 == max_tokens;
        full = !at_max && infer_seq_length(s->ctx, bs.beams[0].slot) == s->params.n_ctx;
        last = at_max || full;
        status = beam_step(&bs, n_prompt, !last, err);
        settled = status == 0 && search_done(&bs, longest);
    }
    FinishReason open_finish = full ? FINISH_CONTEXT : FINISH_LENGTH;
    for (int b = 0; status == 0 && !settled && b < bs.n_beams; b++) /* finished as they are */
        status = finished_add(&bs, &bs.beams[b],
                              hypothesis_score(bs.beams[b].sum, bs.beams[b].c.n_tokens, bs.alpha),
                              open_finish, err);
    s->stats.search_steps += bs.steps;
    s->stats.generated_tokens += bs.decoded;
    s->stats.generate_seconds += timer_seconds() - start;
    for (int i = 0; i < bs.n_best_found; i++) {
        if (status == 0)
            out[i] = bs.best[i];
        else
            completion_free(&bs.best[i]);
    }
    *n_out = status == 0 ? bs.n_best_found : 0;
    beams_free(bs.beams, bs.n_beams);
    candidates_free(&bs.cand);
    free(bs.beams);
    free(bs.next);
    free(bs.best);
    free(bs.ext);
    free(bs.dealt);
    free(bs.forced);
    free(bs.bank);
    return status;
}

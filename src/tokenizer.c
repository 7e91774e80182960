/* The vocabulary, the special-token cut, GGUF storage and decoding, run the way llama.cpp
 * runs them (tokenizer.h has the overview; the SentencePiece encoder is in tokenizer_spm.c,
 * byte-level BPE in tokenizer_bpe.c). The reference is llama.cpp's src/llama-vocab.cpp:
 * llama_vocab::impl::tokenize (the outer steps) and token_to_piece (what a token decodes
 * to). */
#include "tokenizer.h"

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buffer.h"
#include "hash.h"
#include "tokenizer_internal.h"


/* ---- Piece index: piece bytes -> id ----
 * Open addressing with linear probing: a power-of-two number of slots, at least twice the
 * number of pieces, so that a probe sequence stays short. The index also remembers every
 * piece's length (pieces are NUL-terminated, but lookups come with a length) and the list
 * of special pieces that encoding cuts out of the text first. */
struct PieceIndex {
    size_t mask;   /* number of slots - 1 */
    int *slots;    /* a piece id, or -1 for an empty slot */
    size_t *lens;  /* byte length of each piece, by id */
    int *specials; /* ids of CONTROL, USER_DEFINED and UNKNOWN pieces, longest first
                      (see encode_split) */
    int n_specials;
};

/* The slot that holds the piece, or the empty slot where it would go. */
static size_t index_slot(const Tokenizer *t, const char *piece, size_t len)
{
    const PieceIndex *idx = t->index;
    size_t i = (size_t)hash64(piece, len) & idx->mask;
    for (;;) {
        int id = idx->slots[i];
        if (id < 0 || (idx->lens[id] == len && memcmp(t->pieces[id], piece, len) == 0))
            return i;
        i = (i + 1) & idx->mask;
    }
}

int tokenizer_lookup(const Tokenizer *t, const char *piece, size_t len)
{
    if (!t->index || len == 0)
        return -1;
    return t->index->slots[index_slot(t, piece, len)];
}

static int index_insert_all(Tokenizer *t, Error *err)
{
    PieceIndex *idx = t->index;
    for (int id = 0; id < t->n_vocab; id++) {
        size_t len = idx->lens[id];
        /* An empty piece can never equal a symbol (symbols are at least one byte), so it
         * stays out of the table; llama.cpp renames such pieces "[EMPTY_<id>]". */
        if (len == 0)
            continue;
        size_t slot = index_slot(t, t->pieces[id], len);
        if (idx->slots[slot] >= 0)
            return error_set(err, "vocabulary: piece %d '%.40s' repeats piece %d", id,
                             t->pieces[id], idx->slots[slot]);
        idx->slots[slot] = id;
    }
    return 0;
}

typedef struct {
    size_t len;
    int id;
} PieceLength;

static int piece_length_cmp(const void *a, const void *b)
{
    const PieceLength *x = a, *y = b;
    if (x->len != y->len)
        return x->len > y->len ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

static bool type_is_special(int32_t type)
{
    return type == TOKEN_TYPE_CONTROL || type == TOKEN_TYPE_USER_DEFINED ||
           type == TOKEN_TYPE_UNKNOWN;
}

/* llama.cpp cuts special pieces out of the text before running the encoder, longest piece
 * first. It sorts with an unstable sort, so pieces of equal length come in no promised
 * order; quill takes them by ascending id. */
static int index_list_specials(Tokenizer *t, Error *err)
{
    PieceIndex *idx = t->index;
    PieceLength *order = malloc((size_t)t->n_vocab * sizeof *order);
    idx->specials = malloc((size_t)t->n_vocab * sizeof *idx->specials);
    if (!order || !idx->specials) {
        free(order);
        return error_set(err, "out of memory for the list of special pieces");
    }
    int n = 0;
    for (int id = 0; id < t->n_vocab; id++)
        if (type_is_special(t->types[id]) && idx->lens[id] > 0)
            order[n++] = (PieceLength){idx->lens[id], id};
    qsort(order, (size_t)n, sizeof *order, piece_length_cmp);
    for (int i = 0; i < n; i++)
        idx->specials[i] = order[i].id;
    idx->n_specials = n;
    free(order);
    return 0;
}

static int index_build(Tokenizer *t, Error *err)
{
    size_t n_slots = 16;
    while (n_slots < 2 * (size_t)t->n_vocab)
        n_slots *= 2;
    PieceIndex *idx = calloc(1, sizeof *idx);
    if (!idx)
        return error_set(err, "out of memory for the piece index");
    t->index = idx;
    idx->mask = n_slots - 1;
    idx->slots = malloc(n_slots * sizeof *idx->slots);
    idx->lens = malloc((size_t)t->n_vocab * sizeof *idx->lens);
    if (!idx->slots || !idx->lens)
        return error_set(err, "out of memory for the piece index (%zu slots)", n_slots);
    for (size_t i = 0; i < n_slots; i++)
        idx->slots[i] = -1;
    for (int id = 0; id < t->n_vocab; id++)
        idx->lens[id] = strlen(t->pieces[id]);
    if (index_insert_all(t, err) < 0)
        return -1;
    return index_list_specials(t, err);
}

static void index_free(PieceIndex *idx)
{
    if (!idx)
        return;
    free(idx->slots);
    free(idx->lens);
    free(idx->specials);
    free(idx);
}

/* ---- Building a tokenizer ---- */

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Reads the byte of a "<0xAB>" piece. False when the piece has another form. */
static bool byte_piece_value(const char *piece, unsigned char *byte)
{
    if (strlen(piece) != 6 || strncmp(piece, "<0x", 3) != 0 || piece[5] != '>')
        return false;
    int hi = hex_digit(piece[3]), lo = hex_digit(piece[4]);
    if (hi < 0 || lo < 0)
        return false;
    *byte = (unsigned char)(hi * 16 + lo);
    return true;
}

static int tokenizer_copy_piece(Tokenizer *t, int id, const char *piece, float score,
                                int32_t type, Error *err)
{
    unsigned char byte;
    if (!piece)
        return error_set(err, "vocabulary: piece %d is missing", id);
    if (isnan(score))
        return error_set(err, "vocabulary: piece %d '%.40s' has a NaN score", id, piece);
    if (type == TOKEN_TYPE_BYTE && !byte_piece_value(piece, &byte))
        return error_set(err, "vocabulary: piece %d '%.40s' has type BYTE but is not <0xAB>", id,
                         piece);
    t->pieces[id] = strdup(piece);
    if (!t->pieces[id])
        return error_set(err, "out of memory copying piece %d", id);
    t->scores[id] = score;
    t->types[id] = type;
    return 0;
}

static int tokenizer_copy_arrays(Tokenizer *t, int n_vocab, const char *const *pieces,
                                 const float *scores, const int32_t *types, Error *err)
{
    t->n_vocab = n_vocab;
    t->pieces = calloc((size_t)n_vocab, sizeof *t->pieces);
    t->scores = malloc((size_t)n_vocab * sizeof *t->scores);
    t->types = malloc((size_t)n_vocab * sizeof *t->types);
    if (!t->pieces || !t->scores || !t->types)
        return error_set(err, "out of memory for a vocabulary of %d pieces", n_vocab);
    for (int id = 0; id < n_vocab; id++) {
        float score = scores ? scores[id] : 0.0f;
        int32_t type = types ? types[id] : TOKEN_TYPE_NORMAL;
        if (tokenizer_copy_piece(t, id, pieces[id], score, type, err) < 0)
            return -1;
    }
    return 0;
}

static void tokenizer_find_specials(Tokenizer *t)
{
    for (int id = 0; id < t->n_vocab; id++) {
        if (t->types[id] == TOKEN_TYPE_UNKNOWN && t->unk_id < 0)
            t->unk_id = id;
        if (t->types[id] != TOKEN_TYPE_CONTROL)
            continue;
        if (t->bos_id < 0 && strcmp(t->pieces[id], "<s>") == 0)
            t->bos_id = id;
        if (t->eos_id < 0 && strcmp(t->pieces[id], "</s>") == 0)
            t->eos_id = id;
    }
    /* Byte tokens are found by their text, whatever their type, as llama.cpp does. */
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        t->byte_token[b] = tokenizer_lookup(t, name, 6);
    }
}

/* The part both kinds share: the arrays and the index. Special ids start at -1. */
static int tokenizer_init_vocab(Tokenizer *t, TokenizerKind kind, int n_vocab,
                                const char *const *pieces, const float *scores,
                                const int32_t *types, Error *err)
{
    memset(t, 0, sizeof *t);
    t->kind = kind;
    t->bos_id = t->eos_id = t->eot_id = t->pad_id = t->unk_id = -1;
    for (int b = 0; b < 256; b++)
        t->byte_token[b] = -1;
    if (n_vocab <= 0)
        return error_set(err, "vocabulary: %d pieces (needs at least one)", n_vocab);
    if (tokenizer_copy_arrays(t, n_vocab, pieces, scores, types, err) < 0 ||
        index_build(t, err) < 0) {
        tokenizer_free(t);
        return -1;
    }
    return 0;
}

int tokenizer_init(Tokenizer *t, int n_vocab, const char *const *pieces, const float *scores,
                   const int32_t *types, Error *err)
{
    if (tokenizer_init_vocab(t, TOKENIZER_SPM, n_vocab, pieces, scores, types, err) < 0)
        return -1;
    tokenizer_find_specials(t);
    t->add_bos = true;
    t->add_space_prefix = true;
    return 0;
}

int tokenizer_init_bpe(Tokenizer *t, int n_vocab, const char *const *pieces,
                       const int32_t *types, const char *const *merges, size_t n_merges,
                       const char *pre, Error *err)
{
    if (tokenizer_init_vocab(t, TOKENIZER_BPE, n_vocab, pieces, NULL, types, err) < 0)
        return -1;
    if (bpe_model_init(t, pre, merges, n_merges, err) < 0) {
        tokenizer_free(t);
        return -1;
    }
    t->add_bos = bpe_model_default_add_bos(t->bpe);
    return 0;
}

const char *tokenizer_kind_name(const Tokenizer *t)
{
    return t->kind == TOKENIZER_BPE ? "byte-level BPE" : "SentencePiece BPE";
}

const char *tokenizer_pre_name(const Tokenizer *t)
{
    return t->bpe ? bpe_model_pre_name(t->bpe) : NULL;
}

void tokenizer_free(Tokenizer *t)
{
    if (!t)
        return;
    if (t->pieces)
        for (int id = 0; id < t->n_vocab; id++)
            free(t->pieces[id]);
    free(t->pieces);
    free(t->scores);
    free(t->types);
    index_free(t->index);
    bpe_model_free(t->bpe);
    free(t->chat_template);
    memset(t, 0, sizeof *t);
}

/* ---- Encoding, step 4: symbols to ids ---- */

/* Room for `more` ids after the n held. */
static int idlist_reserve(IdList *l, size_t more, Error *err)
{
    return buffer_reserve_items(&l->ids, &l->cap, l->n + more, sizeof *l->ids, 64, "token ids",
                                err);
}

int idlist_push(IdList *l, int id, Error *err)
{
    if (idlist_reserve(l, 1, err) < 0)
        return -1;
    l->ids[l->n++] = id;
    return 0;
}

int idlist_append(IdList *l, const int *ids, size_t n, Error *err)
{
    if (n == 0)
        return 0;
    if (idlist_reserve(l, n, err) < 0)
        return -1;
    memcpy(l->ids + l->n, ids, n * sizeof *ids);
    l->n += n;
    return 0;
}

/* ---- Encoding: the outer step ---- */

/* Offset of the first occurrence of needle (not empty) in hay, or SIZE_MAX. (Text may
 * hold NUL bytes, so strstr will not do.) memchr finds the candidates quickly. */
static size_t bytes_find(const char *hay, size_t hay_len, const char *needle, size_t needle_len)
{
    size_t at = 0;
    while (at + needle_len <= hay_len) {
        const char *hit = memchr(hay + at, needle[0], hay_len - needle_len + 1 - at);
        if (!hit)
            break;
        at = (size_t)(hit - hay);
        if (memcmp(hit, needle, needle_len) == 0)
            return at;
        at++;
    }
    return SIZE_MAX;
}

typedef struct {
    const Tokenizer *t;
    IdList *out;
    bool parse_special; /* cut CONTROL and UNKNOWN pieces too, not only USER_DEFINED ones */
    bool after_special; /* the last thing emitted was a token cut out of the text */
    BpeSession *bpe;    /* byte-level BPE: the session that encodes the raw stretches */
} Splitter;

/* Encodes one stretch of raw text between special tokens with the tokenizer's kind. */
static int encode_stretch(Splitter *s, const char *text, size_t len, Error *err)
{
    if (s->t->kind == TOKENIZER_BPE)
        return bpe_encode_fragment(s->bpe, text, len, s->out, err);
    bool prefix = s->t->add_space_prefix && s->after_special;
    return spm_encode_fragment(s->t, text, len, prefix, s->out, err);
}

/* Before the encoder runs, llama.cpp cuts special pieces out of the text. USER_DEFINED
 * pieces are always looked for: each occurrence becomes its token. CONTROL and UNKNOWN
 * pieces are looked for only with parse_special; without it, "<s>" or "<|im_start|>" in a
 * text stays plain text. The pieces are tried longest first, each over whatever text the
 * earlier ones left. Here that is a recursion: find the first occurrence of piece k; the
 * text to its left can only hold pieces after k; the text to its right is searched for
 * piece k again. Every remaining stretch of raw text is encoded on its own; with SPM it
 * gets the space prefix when it starts the text or follows a cut-out token (llama.cpp's
 * is_prev_special). */
static int encode_split(Splitter *s, const char *text, size_t len, int k, Error *err)
{
    const PieceIndex *idx = s->t->index;
    while (k < idx->n_specials) {
        int id = idx->specials[k];
        size_t piece_len = idx->lens[id];
        if (!s->parse_special && s->t->types[id] != TOKEN_TYPE_USER_DEFINED) {
            k++;
            continue;
        }
        size_t at = bytes_find(text, len, s->t->pieces[id], piece_len);
        if (at == SIZE_MAX) {
            k++;
            continue;
        }
        if (at > 0 && encode_split(s, text, at, k + 1, err) < 0)
            return -1;
        if (idlist_push(s->out, id, err) < 0)
            return -1;
        s->after_special = true;
        text += at + piece_len;
        len -= at + piece_len;
    }
    if (len == 0)
        return 0;
    int rc = encode_stretch(s, text, len, err);
    s->after_special = false;
    return rc;
}

int tokenizer_encode_with(const Tokenizer *t, const char *text, size_t len, EncodeOptions opt,
                          int **ids, size_t *n_ids, Error *err)
{
    *ids = NULL;
    *n_ids = 0;
    if (opt.add_bos && t->bos_id < 0)
        return error_set(err, "cannot add bos: the vocabulary has no bos token");
    if (opt.add_eos && t->eos_id < 0)
        return error_set(err, "cannot add eos: the vocabulary has no eos token");
    IdList out = {0};
    Splitter s = {.t = t, .out = &out, .parse_special = opt.parse_special,
                  .after_special = !opt.mid_text};
    int rc = t->kind == TOKENIZER_BPE ? bpe_session_new(&s.bpe, t, err) : 0;
    /* Empty text gives no tokens at all, not a lone "▁" (llama.cpp skips empty text). */
    if (rc == 0 && opt.add_bos)
        rc = idlist_push(&out, t->bos_id, err);
    if (rc == 0 && len > 0)
        rc = encode_split(&s, text, len, 0, err);
    if (rc == 0 && opt.add_eos)
        rc = idlist_push(&out, t->eos_id, err);
    bpe_session_free(s.bpe);
    if (rc < 0) {
        free(out.ids);
        return -1;
    }
    *ids = out.ids;
    *n_ids = out.n;
    return 0;
}

int tokenizer_encode(const Tokenizer *t, const char *text, size_t len, bool add_bos, int **ids,
                     size_t *n_ids, Error *err)
{
    return tokenizer_encode_with(t, text, len, (EncodeOptions){.add_bos = add_bos}, ids, n_ids,
                                 err);
}

/* ---- Decoding ---- */

/* Copies src into buf[at...] as far as cap allows (src and the target may overlap). */
static void copy_clipped(char *buf, size_t cap, size_t at, const char *src, size_t n)
{
    if (at < cap)
        memmove(buf + at, src, n < cap - at ? n : cap - at);
}

/* Escaped text with every "▁" turned back into a space, written into buf as far as cap
 * allows; returns the full length. buf may be the text itself: the output never gets
 * ahead of the input. */
static size_t unescape_clipped(const char *text, size_t len, char *buf, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        if (len - i >= SPACE_MARK_LEN && memcmp(text + i, SPACE_MARK, SPACE_MARK_LEN) == 0) {
            copy_clipped(buf, cap, n++, " ", 1);
            i += SPACE_MARK_LEN;
        } else {
            copy_clipped(buf, cap, n++, text + i, 1);
            i++;
        }
    }
    return n;
}

/* As llama.cpp's token_to_piece with special = false: UNKNOWN and CONTROL tokens (and
 * UNUSED, or types llama.cpp does not know) are empty, USER_DEFINED tokens are their text
 * as is, NORMAL tokens their text with "▁" as spaces (SPM) or their characters mapped back
 * to bytes (byte-level BPE), BYTE tokens their byte. */
size_t tokenizer_token_bytes(const Tokenizer *t, int id, char *buf, size_t cap)
{
    if (id < 0 || id >= t->n_vocab)
        return 0;
    const char *piece = t->pieces[id];
    size_t len = t->index->lens[id];
    unsigned char byte;
    switch (t->types[id]) {
    case TOKEN_TYPE_NORMAL:
        if (t->kind == TOKENIZER_BPE)
            return bpe_token_bytes(t, id, buf, cap);
        return unescape_clipped(piece, len, buf, cap);
    case TOKEN_TYPE_USER_DEFINED:
        copy_clipped(buf, cap, 0, piece, len);
        return len;
    case TOKEN_TYPE_BYTE:
        byte_piece_value(piece, &byte); /* checked by tokenizer_init */
        copy_clipped(buf, cap, 0, (const char *)&byte, 1);
        return 1;
    default:
        return 0;
    }
}

typedef struct {
    char *data;
    size_t n, cap;
} ByteBuf;

static int bytebuf_append(ByteBuf *b, const char *bytes, size_t n, Error *err)
{
    if (buffer_reserve(&b->data, &b->cap, b->n + n + 1, 64, "decoded text", err) != 0)
        return -1;
    memcpy(b->data + b->n, bytes, n);
    b->n += n;
    b->data[b->n] = '\0';
    return 0;
}

/* Decoding undoes encoding in reverse. The NORMAL and BYTE tokens of a stretch of text
 * are joined as stored ("▁" and raw bytes) into `run`, which then is exactly the escaped
 * text the encoder saw; only then does every "▁" become a space. Joining first matters:
 * when a space is swallowed by the cut of a broken UTF-8 sequence ("\xFF " escapes to
 * FF E2 96 81, cut as one 4-byte symbol), the "▁" comes back as byte tokens. */
typedef struct {
    const Tokenizer *t;
    ByteBuf out;
    ByteBuf run;
    bool strip; /* the encoder put a space in front of the text that `run` holds */
} Decoder;

/* Moves `run` into `out` with every "▁" as a space, dropping the one leading space the
 * encoder added. */
static int decoder_flush(Decoder *d, Error *err)
{
    if (d->run.n == 0)
        return 0;
    size_t n = unescape_clipped(d->run.data, d->run.n, d->run.data, d->run.n);
    size_t skip = d->strip && d->run.data[0] == ' ';
    d->run.n = 0;
    d->strip = false;
    return bytebuf_append(&d->out, d->run.data + skip, n - skip, err);
}

static int decoder_push(Decoder *d, int id, Error *err)
{
    const Tokenizer *t = d->t;
    unsigned char byte;
    switch (t->types[id]) {
    case TOKEN_TYPE_NORMAL:
        return bytebuf_append(&d->run, t->pieces[id], t->index->lens[id], err);
    case TOKEN_TYPE_BYTE:
        byte_piece_value(t->pieces[id], &byte);
        return bytebuf_append(&d->run, (const char *)&byte, 1, err);
    case TOKEN_TYPE_USER_DEFINED:
        /* Cut out of the text before encoding, so not escaped; the encoder puts a space
         * in front of the raw text after it. */
        if (decoder_flush(d, err) < 0)
            return -1;
        d->strip = t->add_space_prefix;
        return bytebuf_append(&d->out, t->pieces[id], t->index->lens[id], err);
    default:
        return 0; /* control tokens print nothing and leave the text around them alone */
    }
}

/* Byte-level BPE has no escaping and no added space to undo: each token's bytes, in turn. */
static int decoder_push_bpe(Decoder *d, int id, Error *err)
{
    char small[64];
    size_t n = tokenizer_token_bytes(d->t, id, small, sizeof small);
    if (n <= sizeof small)
        return bytebuf_append(&d->out, small, n, err);
    char *big = malloc(n);
    if (!big)
        return error_set(err, "out of memory for a token of %zu bytes", n);
    tokenizer_token_bytes(d->t, id, big, n);
    int rc = bytebuf_append(&d->out, big, n, err);
    free(big);
    return rc;
}

int tokenizer_decode(const Tokenizer *t, const int *ids, size_t n, char **text, size_t *len,
                     Error *err)
{
    *text = NULL;
    *len = 0;
    Decoder d = {.t = t, .strip = t->add_space_prefix};
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (ids[i] < 0 || ids[i] >= t->n_vocab)
            rc = error_set(err, "token %zu: id %d is out of range (vocabulary of %d)", i,
                           ids[i], t->n_vocab);
        else if (t->kind == TOKENIZER_BPE)
            rc = decoder_push_bpe(&d, ids[i], err);
        else
            rc = decoder_push(&d, ids[i], err);
    }
    if (rc == 0)
        rc = decoder_flush(&d, err);
    if (rc == 0)
        rc = bytebuf_append(&d.out, "", 0, err); /* a NUL even for empty text */
    free(d.run.data);
    if (rc < 0) {
        free(d.out.data);
        return -1;
    }
    *text = d.out.data;
    *len = d.out.n;
    return 0;
}

/* ---- GGUF ---- */

/* tokenizer.ggml.scores: optional, float32 (or int32, which llama.cpp also reads), one per
 * piece. *owned is set when the values had to be converted. */
static int gguf_read_scores(const GgufFile *f, uint64_t n, const float **scores, float **owned,
                            Error *err)
{
    static const char key[] = "tokenizer.ggml.scores";
    *scores = NULL;
    *owned = NULL;
    const GgufKV *kv = gguf_find_kv(f, key);
    if (!kv)
        return 0;
    if (kv->type != GGUF_TYPE_ARRAY ||
        (kv->elem_type != GGUF_TYPE_FLOAT32 && kv->elem_type != GGUF_TYPE_INT32))
        return error_set(err, "%s must be an array of f32 (or i32)", key);
    if (kv->n != n)
        return error_set(err, "%s has %llu entries but tokenizer.ggml.tokens has %llu", key,
                         (unsigned long long)kv->n, (unsigned long long)n);
    if (kv->elem_type == GGUF_TYPE_FLOAT32) {
        *scores = kv->array;
        return 0;
    }
    *owned = malloc(n * sizeof **owned);
    if (!*owned)
        return error_set(err, "out of memory for %llu scores", (unsigned long long)n);
    for (uint64_t i = 0; i < n; i++)
        (*owned)[i] = (float)((const int32_t *)kv->array)[i];
    *scores = *owned;
    return 0;
}

/* tokenizer.ggml.token_type: optional, int32, one per piece. */
static int gguf_read_types(const GgufFile *f, uint64_t n, const int32_t **types, Error *err)
{
    static const char key[] = "tokenizer.ggml.token_type";
    *types = NULL;
    const GgufKV *kv = gguf_find_kv(f, key);
    if (!kv)
        return 0;
    if (kv->type != GGUF_TYPE_ARRAY || kv->elem_type != GGUF_TYPE_INT32)
        return error_set(err, "%s must be an array of i32", key);
    if (kv->n != n)
        return error_set(err, "%s has %llu entries but tokenizer.ggml.tokens has %llu", key,
                         (unsigned long long)kv->n, (unsigned long long)n);
    *types = kv->array;
    return 0;
}

/* A special token id, when the file names one; it must be a valid id, or 0xFFFFFFFF (-1
 * stored as u32), which some converters write for "none". */
static int gguf_read_special(const GgufFile *f, const char *key, int n_vocab, int *id,
                             Error *err)
{
    if (!gguf_find_kv(f, key))
        return 0;
    uint32_t v;
    if (gguf_get_u32(f, key, &v, err) < 0)
        return -1;
    if (v == UINT32_MAX) {
        *id = -1;
        return 0;
    }
    if (v >= (uint32_t)n_vocab)
        return error_set(err, "%s = %u is out of range (vocabulary of %d)", key, v, n_vocab);
    *id = (int)v;
    return 0;
}

static int gguf_read_flag(const GgufFile *f, const char *key, bool *flag, Error *err)
{
    if (!gguf_find_kv(f, key))
        return 0;
    return gguf_get_bool(f, key, flag, err);
}

static int gguf_read_tokens(const GgufFile *f, uint64_t *n, const char *const **pieces,
                            const int32_t **types, Error *err)
{
    const void *data;
    if (gguf_get_array(f, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, n, &data, err) < 0)
        return -1;
    if (*n == 0 || *n > INT_MAX)
        return error_set(err, "tokenizer.ggml.tokens has %llu pieces", (unsigned long long)*n);
    *pieces = data;
    return gguf_read_types(f, *n, types, err);
}

/* SentencePiece: tokens, scores, types. */
static int gguf_read_spm(Tokenizer *t, const GgufFile *f, Error *err)
{
    uint64_t n;
    const char *const *pieces;
    const int32_t *types;
    const float *scores;
    float *owned_scores;
    if (gguf_read_tokens(f, &n, &pieces, &types, err) < 0 ||
        gguf_read_scores(f, n, &scores, &owned_scores, err) < 0)
        return -1;
    int rc = tokenizer_init(t, (int)n, pieces, scores, types, err);
    free(owned_scores);
    return rc;
}

/* Byte-level BPE: tokens, types, merges (required, as in llama.cpp) and the pre-tokenizer
 * name (optional: llama.cpp warns and uses "default"). */
static int gguf_read_bpe(Tokenizer *t, const GgufFile *f, Error *err)
{
    uint64_t n, n_merges;
    const char *const *pieces;
    const int32_t *types;
    const void *merges;
    const char *pre = NULL;
    if (gguf_read_tokens(f, &n, &pieces, &types, err) < 0 ||
        gguf_get_array(f, "tokenizer.ggml.merges", GGUF_TYPE_STRING, &n_merges, &merges, err) <
            0 ||
        (gguf_find_kv(f, "tokenizer.ggml.pre") &&
         gguf_get_str(f, "tokenizer.ggml.pre", &pre, err) < 0))
        return -1;
    return tokenizer_init_bpe(t, (int)n, pieces, types, (const char *const *)merges,
                              (size_t)n_merges, pre, err);
}

/* The end-of-turn token, when the file does not name one: the first CONTROL piece with one
 * of the texts chat models use. llama.cpp looks for the same texts (in no fixed order, and
 * also among pieces of other types, which it then makes CONTROL). */
static void tokenizer_find_eot(Tokenizer *t)
{
    static const char *const texts[] = {"<|eot_id|>",  "<|im_end|>",    "<|end|>",
                                        "<end_of_turn>", "<|endoftext|>", "<EOT>"};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0] && t->eot_id < 0; i++) {
        int id = tokenizer_lookup(t, texts[i], strlen(texts[i]));
        if (id >= 0 && t->types[id] == TOKEN_TYPE_CONTROL)
            t->eot_id = id;
    }
}

/* The keys both kinds share: special ids and flags. */
static int gguf_read_specials(Tokenizer *t, const GgufFile *f, Error *err)
{
    if (gguf_read_special(f, "tokenizer.ggml.bos_token_id", t->n_vocab, &t->bos_id, err) < 0 ||
        gguf_read_special(f, "tokenizer.ggml.eos_token_id", t->n_vocab, &t->eos_id, err) < 0 ||
        gguf_read_special(f, "tokenizer.ggml.eot_token_id", t->n_vocab, &t->eot_id, err) < 0 ||
        gguf_read_special(f, "tokenizer.ggml.padding_token_id", t->n_vocab, &t->pad_id, err) <
            0 ||
        gguf_read_special(f, "tokenizer.ggml.unknown_token_id", t->n_vocab, &t->unk_id, err) <
            0 ||
        gguf_read_flag(f, "tokenizer.ggml.add_bos_token", &t->add_bos, err) < 0 ||
        gguf_read_flag(f, "tokenizer.ggml.add_eos_token", &t->add_eos, err) < 0)
        return -1;
    if (t->eot_id < 0)
        tokenizer_find_eot(t);
    /* The space prefix is SentencePiece's: byte-level BPE never adds one (llama.cpp sets
     * it false for "gpt2" before reading the key). */
    if (t->kind == TOKENIZER_SPM)
        return gguf_read_flag(f, "tokenizer.ggml.add_space_prefix", &t->add_space_prefix, err);
    return 0;
}

/* The chat template, when the file has one as a string (the chat code reads it from the file
 * itself and ignores other types; so does this). */
static int gguf_read_chat_template(Tokenizer *t, const GgufFile *f, Error *err)
{
    const GgufKV *kv = gguf_find_kv(f, "tokenizer.chat_template");
    if (!kv || kv->type != GGUF_TYPE_STRING)
        return 0;
    t->chat_template = strdup(kv->value.s);
    return t->chat_template ? 0 : error_set(err, "out of memory for the chat template");
}

int tokenizer_from_gguf(Tokenizer *t, const GgufFile *f, Error *err)
{
    memset(t, 0, sizeof *t);
    const char *model;
    if (gguf_get_str(f, "tokenizer.ggml.model", &model, err) < 0)
        return -1;
    int rc;
    if (strcmp(model, "llama") == 0) {
        rc = gguf_read_spm(t, f, err);
        /* Ids that the file does not name keep what tokenizer_init found by type and text
         * (llama.cpp would assume 1, 2 and 0; the same ids in every vocabulary that follows
         * the usual layout). */
    } else if (strcmp(model, "gpt2") == 0) {
        rc = gguf_read_bpe(t, f, err);
        /* llama.cpp's defaults for "gpt2" where the file names no id: bos and eos 11 (a
         * leftover that no real file relies on), no unk, pad or eot; add_bos false except
         * for the llama-bpe pre-tokenizer; add_eos false. */
        if (rc == 0 && t->n_vocab > 11)
            t->bos_id = t->eos_id = 11;
    } else {
        return error_set(err,
                         "tokenizer model '%s' is not supported: quill reads 'llama' "
                         "(SentencePiece BPE) and 'gpt2' (byte-level BPE)",
                         model);
    }
    if (rc < 0)
        return -1;
    if (gguf_read_specials(t, f, err) < 0 || gguf_read_chat_template(t, f, err) < 0) {
        tokenizer_free(t);
        return -1;
    }
    return 0;
}

static void gguf_write_special(GgufWriter *w, const char *key, int id)
{
    if (id >= 0)
        gguf_writer_add_u32(w, key, (uint32_t)id);
}

void tokenizer_to_gguf(const Tokenizer *t, GgufWriter *w)
{
    uint64_t n = (uint64_t)t->n_vocab;
    if (t->kind == TOKENIZER_BPE) {
        size_t n_merges;
        const char *const *merges = bpe_model_merges(t->bpe, &n_merges);
        gguf_writer_add_str(w, "tokenizer.ggml.model", "gpt2");
        gguf_writer_add_str(w, "tokenizer.ggml.pre", tokenizer_pre_name(t));
        gguf_writer_add_str_array(w, "tokenizer.ggml.tokens", (const char *const *)t->pieces, n);
        gguf_writer_add_array(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, t->types, n);
        gguf_writer_add_str_array(w, "tokenizer.ggml.merges", merges, n_merges);
    } else {
        gguf_writer_add_str(w, "tokenizer.ggml.model", "llama");
        gguf_writer_add_str_array(w, "tokenizer.ggml.tokens", (const char *const *)t->pieces, n);
        gguf_writer_add_array(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, t->scores, n);
        gguf_writer_add_array(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, t->types, n);
    }
    gguf_write_special(w, "tokenizer.ggml.bos_token_id", t->bos_id);
    gguf_write_special(w, "tokenizer.ggml.eos_token_id", t->eos_id);
    gguf_write_special(w, "tokenizer.ggml.eot_token_id", t->eot_id);
    gguf_write_special(w, "tokenizer.ggml.padding_token_id", t->pad_id);
    gguf_write_special(w, "tokenizer.ggml.unknown_token_id", t->unk_id);
    /* A vocabulary without bos says false: llama.cpp would otherwise add its default bos
     * id (1 for SPM, 11 for gpt2). */
    gguf_writer_add_bool(w, "tokenizer.ggml.add_bos_token", t->add_bos && t->bos_id >= 0);
    gguf_writer_add_bool(w, "tokenizer.ggml.add_eos_token", t->add_eos && t->eos_id >= 0);
    if (t->kind == TOKENIZER_SPM)
        gguf_writer_add_bool(w, "tokenizer.ggml.add_space_prefix", t->add_space_prefix);
    if (t->chat_template)
        gguf_writer_add_str(w, "tokenizer.chat_template", t->chat_template);
}

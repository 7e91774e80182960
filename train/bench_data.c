/* quill bench-data: the data pipeline of a new run on a corpus larger than memory should
 * be: a generated corpus of --size-mb (1 GB by default) goes through what `quill train`
 * does before its first step: count the words, train a BPE vocabulary, tokenize into the
 * token cache. Each part is timed; the pipeline runs in a child process whose peak resident
 * memory the kernel reports when it ends (getrusage of the child), so the figure is the
 * pipeline's alone. Then the data loader's memory during training: children that map the
 * big cache, or the cache of a small corpus, and draw random batches, as training does.
 *
 * The corpus is pseudo-English: a lexicon of 500,000 made-up words drawn with Zipf's law
 * (a few words very often, most rarely, as in real text), in sentences with capitals,
 * punctuation and numbers, in paragraphs. It is generated once into DIR/corpus.txt by a
 * fixed-seed generator, so every run and every machine measures the same text. */
/* wait4, which returns a child's resource usage (its peak memory), is BSD's and Linux's,
 * not POSIX's. */
#define _DEFAULT_SOURCE
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "corpus.h"
#include "data.h"
#include "fileio.h"
#include "machine.h"
#include "matmul.h"
#include "rng.h"
#include "timer.h"
#include "train.h"

typedef struct {
    int size_mb;
    int vocab_size;
    int threads;
    const char *dir;
} BenchDataOptions;

/* ---- the generated corpus ------------------------------------------------------------ */

enum { LEXICON_WORDS = 500000, MAX_WORD = 24 };

typedef struct {
    char (*words)[MAX_WORD];
    double *cdf; /* cumulative Zipf-Mandelbrot probabilities by rank */
} Lexicon;

/* A made-up word of 1 to 4 syllables, shorter words more likely (as in English). */
static void make_word(Rng *rng, char *out)
{
    static const char *const onsets[] = {"", "b", "c", "d", "f", "g", "h", "l", "m", "n", "p",
                                         "r", "s", "t", "v", "w", "th", "st", "br", "ch", "sh",
                                         "pl", "gr", "tr"};
    static const char *const vowels[] = {"a", "e", "i", "o", "u", "ea", "ou", "ai", "y"};
    static const char *const codas[] = {"", "", "n", "r", "s", "t", "l", "nd", "st", "ng"};
    float u = rng_uniform(rng);
    int syllables = u < 0.35f ? 1 : u < 0.75f ? 2 : u < 0.93f ? 3 : 4;
    out[0] = '\0';
    for (int s = 0; s < syllables; s++) {
        strcat(out, onsets[rng_below(rng, sizeof onsets / sizeof *onsets)]);
        strcat(out, vowels[rng_below(rng, sizeof vowels / sizeof *vowels)]);
        strcat(out, codas[rng_below(rng, sizeof codas / sizeof *codas)]);
    }
}

/* Zipf-Mandelbrot: the word of rank r (0-based) has weight 1 / (r + 2.7)^1.07, the fit
 * to English word frequencies. */
static double zipf_weight(int r)
{
    return 1.0 / pow(r + 2.7, 1.07);
}

static int lexicon_build(Lexicon *lx, Rng *rng, Error *err)
{
    lx->words = malloc((size_t)LEXICON_WORDS * sizeof *lx->words);
    lx->cdf = malloc((size_t)LEXICON_WORDS * sizeof *lx->cdf);
    if (!lx->words || !lx->cdf)
        return error_set(err, "out of memory for the lexicon");
    double total = 0.0;
    for (int r = 0; r < LEXICON_WORDS; r++) {
        make_word(rng, lx->words[r]);
        total += zipf_weight(r);
        lx->cdf[r] = total;
    }
    for (int r = 0; r < LEXICON_WORDS; r++)
        lx->cdf[r] /= total;
    return 0;
}

static void lexicon_free(Lexicon *lx)
{
    free(lx->words);
    free(lx->cdf);
}

/* A word by its Zipf probability: the first rank whose cumulative probability passes u. */
static const char *lexicon_draw(const Lexicon *lx, Rng *rng)
{
    double u = (double)(rng_next_u64(rng) >> 11) * 0x1.0p-53;
    int lo = 0, hi = LEXICON_WORDS - 1;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (lx->cdf[mid] < u)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lx->words[lo];
}

/* One sentence: 4 to 24 words, the first capitalised, commas and numbers here and there,
 * ended by '.', '?' or '!'. Returns its length in buf (at most 24 * 32 bytes). */
static size_t sentence_write(const Lexicon *lx, Rng *rng, char *buf)
{
    int n_words = 4 + (int)rng_below(rng, 21);
    size_t n = 0;
    for (int w = 0; w < n_words; w++) {
        if (w > 0)
            buf[n++] = ' ';
        if (rng_uniform(rng) < 0.01f) {
            n += (size_t)sprintf(buf + n, "%u", (unsigned)rng_below(rng, 10000));
        } else {
            const char *word = lexicon_draw(lx, rng);
            size_t len = strlen(word);
            memcpy(buf + n, word, len);
            if (w == 0)
                buf[n] = (char)(buf[n] - 'a' + 'A');
            n += len;
        }
        if (w + 1 < n_words && rng_uniform(rng) < 0.08f)
            buf[n++] = ',';
    }
    float end = rng_uniform(rng);
    buf[n++] = end < 0.8f ? '.' : end < 0.9f ? '?' : '!';
    return n;
}

/* Writes the corpus: paragraphs of 3 to 8 sentences, a blank line between them. */
static int corpus_generate(const char *path, size_t bytes, Error *err)
{
    Rng rng;
    rng_seed(&rng, 20261123);
    Lexicon lx = {0};
    enum { BUF_BYTES = 1 << 20, SENTENCE_MAX = 1024 };
    char *buf = malloc(BUF_BYTES);
    AtomicFile af;
    int status = buf ? lexicon_build(&lx, &rng, err) : error_set(err, "out of memory");
    if (status == 0)
        status = atomic_file_open(&af, path, err);
    for (size_t written = 0; status == 0 && written < bytes;) {
        size_t n = 0;
        while (n + 8 * SENTENCE_MAX < BUF_BYTES) {
            int sentences = 3 + (int)rng_below(&rng, 6);
            for (int s = 0; s < sentences; s++) {
                n += sentence_write(&lx, &rng, buf + n);
                buf[n++] = s + 1 < sentences ? ' ' : '\n';
            }
            buf[n++] = '\n';
        }
        if (n > bytes - written)
            n = bytes - written;
        fwrite(buf, 1, n, af.fp);
        written += n;
    }
    if (status == 0)
        status = atomic_file_commit(&af, err);
    free(buf);
    lexicon_free(&lx);
    return status;
}

/* ---- measuring a part in a child process ---------------------------------------------- */

/* What a child reports back through a pipe. */
typedef struct {
    int status;
    double seconds[3];
    uint64_t counts[2];
    char message[sizeof ((Error *)0)->msg]; /* the child's error, whole */
} ChildReport;

typedef int (*ChildWork)(const BenchDataOptions *o, const void *arg, ChildReport *r);

/* Runs work in a child process; fills *r and the child's peak resident memory in MB. */
static int run_child(ChildWork work, const BenchDataOptions *o, const void *arg, ChildReport *r,
                     double *peak_mb, Error *err)
{
    int fds[2];
    if (pipe(fds) != 0)
        return error_set(err, "cannot create a pipe");
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        return error_set(err, "cannot fork");
    if (pid == 0) {
        close(fds[0]);
        ChildReport mine = {0};
        mine.status = work(o, arg, &mine);
        ssize_t sent = write(fds[1], &mine, sizeof mine);
        _exit(sent == (ssize_t)sizeof mine ? 0 : 1);
    }
    close(fds[1]);
    memset(r, 0, sizeof *r);
    ssize_t got = read(fds[0], r, sizeof *r);
    close(fds[0]);
    int wstatus;
    struct rusage usage;
    if (wait4(pid, &wstatus, 0, &usage) < 0 || got != (ssize_t)sizeof *r)
        return error_set(err, "the measuring process failed");
    if (r->status != 0)
        return error_set(err, "%s", r->message);
    *peak_mb = usage.ru_maxrss / 1024.0; /* ru_maxrss is in KB on Linux */
    return 0;
}

static void dir_path(char *out, size_t cap, const BenchDataOptions *o, const char *name)
{
    snprintf(out, cap, "%s/%s", o->dir, name);
}

/* ---- the pipeline of a new run ---------------------------------------------------------- */

/* Count, train, tokenize (hash the files, encode into the cache, read the checksums back);
 * the vocabulary is saved for the loader children. */
static int pipeline_work(const BenchDataOptions *o, const void *arg, ChildReport *r)
{
    (void)arg;
    Error err = {{0}};
    char corpus[4096], cache[4096], vocab[4096];
    dir_path(corpus, sizeof corpus, o, "corpus.txt");
    dir_path(cache, sizeof cache, o, "tokens.bin");
    dir_path(vocab, sizeof vocab, o, "tokenizer.gguf");
    const char *paths[] = {corpus};
    compute_set_threads(o->threads);
    remove(cache);
    TextCounts *counts = NULL;
    Tokenizer tok = {0};
    TokenData d = {0};
    Error warning;
    double t0 = timer_seconds();
    int status = corpus_count_words(paths, 1, TEXT_COUNTS_BPE, CORPUS_SEGMENT_BYTES, o->threads,
                                    &counts, &err);
    double t1 = timer_seconds();
    if (status == 0) {
        r->counts[0] = text_counts_distinct_words(counts);
        status = tokenizer_train_bpe_counts(&tok, counts, o->vocab_size, &err);
    }
    text_counts_free(counts);
    double t2 = timer_seconds();
    if (status == 0)
        status = data_load(&d, paths, 1, &tok, cache, &warning, &err);
    double t3 = timer_seconds();
    r->counts[1] = d.n_tokens;
    r->seconds[0] = t1 - t0;
    r->seconds[1] = t2 - t1;
    r->seconds[2] = t3 - t2;
    if (status == 0) {
        GgufWriter *w = gguf_writer_new();
        tokenizer_to_gguf(&tok, w);
        status = gguf_writer_write(w, vocab, &err);
        gguf_writer_free(w);
    }
    data_free(&d);
    tokenizer_free(&tok);
    snprintf(r->message, sizeof r->message, "%s", err.msg);
    return status;
}

/* ---- the loader during training -------------------------------------------------------- */

enum { LOADER_BATCHES = 2000, LOADER_B = 16, LOADER_T = 256 };

typedef struct {
    const char *corpus, *cache;
} LoaderFiles;

/* Maps the cache of a corpus (tokenizing it first when needed) and draws random training
 * batches from it, as trainer_step does. */
static int loader_work(const BenchDataOptions *o, const void *arg, ChildReport *r)
{
    const LoaderFiles *files = arg;
    const char *corpus = files->corpus, *cache = files->cache;
    Error err = {{0}};
    char vocab[4096];
    dir_path(vocab, sizeof vocab, o, "tokenizer.gguf");
    compute_set_threads(o->threads);
    GgufFile *f = NULL;
    Tokenizer tok = {0};
    TokenData d = {0};
    Error warning;
    const char *paths[] = {corpus};
    int status = gguf_open(&f, vocab, &err);
    if (status == 0)
        status = tokenizer_from_gguf(&tok, f, &err);
    if (status == 0)
        status = data_load(&d, paths, 1, &tok, cache, &warning, &err);
    int *inputs = malloc((size_t)LOADER_B * LOADER_T * sizeof *inputs);
    int *targets = malloc((size_t)LOADER_B * LOADER_T * sizeof *targets);
    if (status == 0 && (!inputs || !targets))
        status = error_set(&err, "out of memory");
    Rng rng;
    rng_seed(&rng, 1);
    double t0 = timer_seconds();
    for (int i = 0; status == 0 && i < LOADER_BATCHES; i++)
        data_batch(&d, SPLIT_TRAIN, LOADER_B, LOADER_T, &rng, 0, inputs, targets);
    r->seconds[0] = timer_seconds() - t0;
    r->counts[0] = d.n_tokens;
    free(inputs);
    free(targets);
    data_free(&d);
    tokenizer_free(&tok);
    gguf_close(f);
    snprintf(r->message, sizeof r->message, "%s", err.msg);
    return status;
}

/* The first `bytes` of the corpus (cut after a newline), for the small-corpus loader. */
static int corpus_prefix(const char *from, const char *to, size_t bytes, Error *err)
{
    FILE *in = fopen(from, "rb");
    if (!in)
        return error_set(err, "%s: cannot open", from);
    char *buf = malloc(bytes);
    size_t got = buf ? fread(buf, 1, bytes, in) : 0;
    fclose(in);
    while (got > 0 && buf[got - 1] != '\n')
        got--;
    int status = buf ? file_write_atomic(to, buf, got, err) : error_set(err, "out of memory");
    free(buf);
    return status;
}

/* ---- the command ------------------------------------------------------------------------ */

static int ensure_corpus(const BenchDataOptions *o, const char *path, Error *err)
{
    size_t bytes = (size_t)o->size_mb << 20;
    FILE *fp = fopen(path, "rb");
    long have = -1;
    if (fp) {
        fseek(fp, 0, SEEK_END);
        have = ftell(fp);
        fclose(fp);
    }
    if (have == (long)bytes) {
        printf("corpus: %s, %d MB (generated earlier)\n", path, o->size_mb);
        return 0;
    }
    double t0 = timer_seconds();
    if (corpus_generate(path, bytes, err) != 0)
        return -1;
    printf("corpus: %s, %d MB, generated in %.1f s\n", path, o->size_mb, timer_seconds() - t0);
    return 0;
}

static int bench_pipeline(const BenchDataOptions *o, double mb, Error *err)
{
    ChildReport r;
    double peak;
    if (run_child(pipeline_work, o, NULL, &r, &peak, err) != 0)
        return -1;
    double total = r.seconds[0] + r.seconds[1] + r.seconds[2];
    printf("new run's data pipeline, one process, %d thread%s:\n", o->threads,
           plural_s(o->threads));
    printf("  count words       %7.1f s  %7.1f MB/s  %llu distinct words\n", r.seconds[0],
           mb / r.seconds[0], (unsigned long long)r.counts[0]);
    printf("  train BPE %-6d  %7.1f s\n", o->vocab_size, r.seconds[1]);
    printf("  tokenize          %7.1f s  %7.1f MB/s  %llu tokens (hash the text, encode, "
           "write the cache, check it)\n",
           r.seconds[2], mb / r.seconds[2], (unsigned long long)r.counts[1]);
    printf("  total             %7.1f s  (goal: <= 240 s for 1 GB)\n", total);
    printf("  peak RSS          %7.0f MB (goal: <= 1024 MB for 1 GB)\n", peak);
    return 0;
}

/* The loader's peak memory on a corpus whose cache exists (made first when it does not,
 * in a process of its own, so that tokenizing is not part of the figure). */
static int bench_loader(const BenchDataOptions *o, const char *corpus, const char *cache_name,
                        const char *label, Error *err)
{
    char cache[4096];
    dir_path(cache, sizeof cache, o, cache_name);
    LoaderFiles files = {corpus, cache};
    ChildReport r;
    double peak;
    if (access(cache, F_OK) != 0 && run_child(loader_work, o, &files, &r, &peak, err) != 0)
        return -1;
    if (run_child(loader_work, o, &files, &r, &peak, err) != 0)
        return -1;
    printf("  %-22s %10llu tokens  peak RSS %6.1f MB  (%d batches in %.2f s)\n", label,
           (unsigned long long)r.counts[0], peak, LOADER_BATCHES, r.seconds[0]);
    return 0;
}

int cmd_bench_data(int argc, char **argv, Error *err)
{
    BenchDataOptions o = {.size_mb = 1024, .vocab_size = 8192, .threads = 2,
                          .dir = "/tmp/quill-bench-data"};
    const Flag flags[] = {
        {"size-mb", FLAG_INT, &o.size_mb, 16, 1 << 20, "corpus size in MB"},
        {"vocab-size", FLAG_INT, &o.vocab_size, 300, 1 << 20, "BPE vocabulary size"},
        {"threads", FLAG_INT, &o.threads, 1, 1024, "threads"},
        {"dir", FLAG_STRING, &o.dir, 0, 0, "where the corpus and the caches go"},
    };
    const CommandSpec spec = {
        .usage = "usage: quill bench-data [options]\n\n"
                 "Generates a corpus (once) and measures what a new training run does with it\n"
                 "before the first step: counting words, training a BPE vocabulary and\n"
                 "tokenizing into the token cache (time, MB/s, peak memory); then the data\n"
                 "loader's memory while it draws training batches from the big cache and from a\n"
                 "small one.\n",
        .flags = flags,
        .n_flags = sizeof flags / sizeof *flags,
    };
    int n_positional;
    int parsed = cli_parse_command(&spec, argc, argv, NULL, &n_positional, stdout, err);
    if (parsed != 0)
        return parsed < 0 ? -1 : 0;
    char cpu[256], corpus[4096], small[4096];
    machine_cpu_name(cpu, sizeof cpu);
    printf("machine: %s, %d thread%s\n", cpu, o.threads, plural_s(o.threads));
    dir_path(corpus, sizeof corpus, &o, "corpus.txt");
    dir_path(small, sizeof small, &o, "small.txt");
    if (dir_create_all(o.dir, err) != 0 || ensure_corpus(&o, corpus, err) != 0 ||
        bench_pipeline(&o, o.size_mb * 1.048576, err) != 0 ||
        corpus_prefix(corpus, small, (size_t)8 << 20, err) != 0)
        return -1;
    char small_cache[4096];
    dir_path(small_cache, sizeof small_cache, &o, "small.tokens");
    remove(small_cache); /* made again from this run's vocabulary */
    printf("the data loader while training (%d random batches of %d x %d, one process "
           "each):\n", LOADER_BATCHES, LOADER_B, LOADER_T);
    char label[64];
    snprintf(label, sizeof label, "%d MB corpus", o.size_mb);
    if (bench_loader(&o, corpus, "tokens.bin", label, err) != 0 ||
        bench_loader(&o, small, "small.tokens", "8 MB corpus", err) != 0)
        return -1;
    return 0;
}

/* posix_openpt, grantpt, unlockpt and ptsname are X/Open's */
#define _XOPEN_SOURCE 700

#include "test_util.h"

#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "fileio.h"
#include "infer.h"
#include "loader.h"

const char *test_shared_path(const char *relative)
{
    /* a few buffers in turn, so that a test can hold several paths at once */
    static char paths[8][4096];
    static int next;
    char *path = paths[next++ % 8];
    const char *root = getenv("QUILL_SHARED");
    snprintf(path, sizeof paths[0], "%s/%s", root && *root ? root : "../shared", relative);
    struct stat st;
    return stat(path, &st) == 0 ? path : NULL;
}

bool test_in_ci(void)
{
    const char *ci = getenv("CI");
    return ci && strcmp(ci, "true") == 0;
}

const char *test_write_corpus(const char *dir)
{
    static char path[512];
    static const char *words[] = {"the", "cat", "sat", "on", "a", "mat", "and", "then",
                                  "ran", "to", "see", "dog", "who", "was", "very", "glad"};
    snprintf(path, sizeof path, "%s/corpus.txt", dir);
    FILE *fp = fopen(path, "w");
    cr_assert_not_null(fp, "cannot write %s", path);
    unsigned state = 777;
    for (int i = 0; i < 9000; i++) {
        state = state * 1103515245u + 12345u; /* the C standard's example generator */
        fprintf(fp, "%s%s", words[(state >> 16) % 16], (state >> 8) % 9 == 0 ? ".\n" : " ");
    }
    fclose(fp);
    return path;
}

const char *test_make_tmpdir(void)
{
    static char dir[64];
    snprintf(dir, sizeof dir, "/tmp/quill-test-XXXXXX");
    cr_assert_not_null(mkdtemp(dir), "mkdtemp failed");
    return dir;
}

quill_model *test_model_load(const char *path)
{
    quill_model_params mp = quill_model_params_default();
    mp.n_threads = 1;
    quill_model *m = quill_model_load(path, &mp);
    cr_assert_not_null(m, "%s", quill_last_error());
    return m;
}

quill_context *test_context_new(quill_model *m, int n_seq, int n_ctx)
{
    quill_context_params cp = quill_context_params_default();
    cp.n_seq = n_seq;
    cp.n_ctx = n_ctx;
    cp.cache_type = QUILL_CACHE_F32;
    quill_context *c = quill_context_new(m, &cp);
    cr_assert_not_null(c, "%s", quill_last_error());
    return c;
}

const char *test_write_file(const char *dir, const char *name, const char *text)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "cannot write %s", path);
    fputs(text, f);
    cr_assert_eq(fclose(f), 0, "cannot write %s", path);
    return path;
}

const char *test_quill_bin(void)
{
    const char *bin = getenv("QUILL_BIN");
    return bin && *bin ? bin : "bin/quill";
}

int test_run_capture(const char *command, char **output)
{
    char *full = NULL;
    size_t full_len = strlen(command) + 16;
    full = malloc(full_len);
    cr_assert_not_null(full);
    snprintf(full, full_len, "%s 2>&1", command);
    FILE *p = popen(full, "r");
    free(full);
    cr_assert_not_null(p, "popen failed for: %s", command);
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    size_t got;
    while ((got = fread(buf + n, 1, cap - n - 1, p)) > 0) {
        n += got;
        if (cap - n - 1 == 0)
            buf = realloc(buf, cap *= 2);
    }
    buf[n] = '\0';
    int status = pclose(p);
    *output = buf;
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

/* Runs `quill ARGS` with ARGS formatted from fmt into args (kept for messages); returns
 * the exit status and the output. */
static int quill_args(char **output, char *args, size_t cap, const char *fmt, va_list ap)
{
    char command[2300];
    vsnprintf(args, cap, fmt, ap);
    snprintf(command, sizeof command, "%s %s", test_quill_bin(), args);
    return test_run_capture(command, output);
}

int quill(char **output, const char *fmt, ...)
{
    char args[2048];
    va_list ap;
    va_start(ap, fmt);
    int status = quill_args(output, args, sizeof args, fmt, ap);
    va_end(ap);
    return status;
}

size_t quill_stdout(char **out, char **messages, int *status, const char *fmt, ...)
{
    const char *dir = test_make_tmpdir();
    char args[2048], file[256], command[2600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(file, sizeof file, "%s/stdout", dir);
    snprintf(command, sizeof command, "{ %s %s > %s; }", test_quill_bin(), args, file);
    *status = test_run_capture(command, messages);
    size_t len;
    Error err;
    cr_assert_eq(file_read_all(file, out, &len, &err), 0, "%s", err.msg);
    return len;
}

/* The child's side: a new session whose controlling terminal is the pseudo-terminal's
 * other end, on its stdin, stdout and stderr. */
static void terminal_attach(const char *slave_name)
{
    setsid();
    int slave = open(slave_name, O_RDWR); /* the first terminal a session leader opens */
    if (slave < 0)
        _exit(126);
    struct winsize size = {.ws_row = 24, .ws_col = 80};
    ioctl(slave, TIOCSWINSZ, &size);
    for (int fd = 0; fd < 3; fd++)
        dup2(slave, fd);
    close(slave);
}

void test_process_start(TestProcess *p, bool terminal, const char *fmt, ...)
{
    char args[2048], command[2600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(command, sizeof command, "exec %s %s", test_quill_bin(), args);
    int to_child[2] = {-1, -1}, from_child[2] = {-1, -1}, master = -1;
    const char *slave_name = NULL;
    if (terminal) {
        master = posix_openpt(O_RDWR | O_NOCTTY);
        cr_assert(master >= 0 && grantpt(master) == 0 && unlockpt(master) == 0,
                  "no pseudo-terminal");
        slave_name = ptsname(master);
        cr_assert_not_null(slave_name);
    } else {
        cr_assert(pipe(to_child) == 0 && pipe(from_child) == 0);
    }
    p->pid = fork();
    cr_assert_geq(p->pid, 0);
    if (p->pid == 0) {
        if (terminal) {
            close(master);
            terminal_attach(slave_name);
        } else {
            dup2(to_child[0], STDIN_FILENO);
            dup2(from_child[1], STDOUT_FILENO);
            dup2(from_child[1], STDERR_FILENO);
            close(to_child[1]);
            close(from_child[0]);
        }
        execl("/bin/sh", "sh", "-c", command, (char *)NULL);
        _exit(127);
    }
    if (terminal) {
        p->in = p->out = master;
    } else {
        close(to_child[0]);
        close(from_child[1]);
        p->in = to_child[1];
        p->out = from_child[0];
    }
    p->n_seen = 0;
    p->seen[0] = '\0';
}

void test_process_type(TestProcess *p, const char *text)
{
    size_t n = strlen(text);
    cr_assert_eq(write(p->in, text, n), (ssize_t)n);
}

/* Reads what is there (waiting for something); false at the end of the output (a pseudo-
 * terminal reports EIO once the program has closed it). */
static bool process_read(TestProcess *p, size_t *from)
{
    size_t room = sizeof p->seen - 1 - p->n_seen;
    if (room == 0) { /* keep the newest half: generated text is long */
        size_t half = sizeof p->seen / 2;
        memmove(p->seen, p->seen + half, p->n_seen - half);
        p->n_seen -= half;
        *from = *from > half ? *from - half : 0;
        room = sizeof p->seen - 1 - p->n_seen;
    }
    ssize_t got = read(p->out, p->seen + p->n_seen, room);
    if (got <= 0)
        return false;
    p->n_seen += (size_t)got;
    p->seen[p->n_seen] = '\0';
    return true;
}

bool test_process_wait_for(TestProcess *p, size_t from, const char *text)
{
    while (!strstr(p->seen + (from < p->n_seen ? from : p->n_seen), text))
        if (!process_read(p, &from))
            return false;
    return true;
}

void test_process_wait_for_line_editing(TestProcess *p)
{
    struct termios mode;
    const struct timespec pause = {0, 10 * 1000000L};
    /* on Linux the master side reads the terminal's settings */
    while (tcgetattr(p->out, &mode) == 0 && (mode.c_lflag & ICANON))
        nanosleep(&pause, NULL);
}

int test_process_finish(TestProcess *p)
{
    size_t from = 0;
    if (p->in != p->out)
        close(p->in);
    while (process_read(p, &from))
        ;
    close(p->out);
    int status;
    cr_assert_eq(waitpid(p->pid, &status, 0), p->pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

void quill_ok(const char *fmt, ...)
{
    char args[2048], *out;
    va_list ap;
    va_start(ap, fmt);
    int status = quill_args(&out, args, sizeof args, fmt, ap);
    va_end(ap);
    cr_assert_eq(status, 0, "quill %s failed (%d):\n%s", args, status, out);
    free(out);
}

void expect_clean_error(const char *needle, const char *fmt, ...)
{
    char args[2048], *out;
    va_list ap;
    va_start(ap, fmt);
    int status = quill_args(&out, args, sizeof args, fmt, ap);
    va_end(ap);
    cr_expect_eq(status, 1, "quill %s: exit %d (want 1):\n%s", args, status, out);
    const char *line = strstr(out, "quill: error: ");
    cr_expect_not_null(line, "quill %s: no error line:\n%s", args, out);
    if (line) {
        const char *end = strchr(line, '\n');
        cr_expect(end && end[1] == '\0', "quill %s: the error is not one last line:\n%s", args, out);
        cr_expect_not_null(strstr(line, needle), "quill %s: '%s' not in:\n%s", args, needle, out);
    }
    free(out);
}

void test_gguf_copy(const char *src, const char *dst, const char *drop_prefix,
                    void (*add_keys)(GgufWriter *w))
{
    GgufFile *f;
    Error err;
    cr_assert_eq(gguf_open(&f, src, &err), 0, "%s", err.msg);
    GgufWriter *w = gguf_writer_new();
    size_t drop_len = drop_prefix ? strlen(drop_prefix) : 0;
    for (uint64_t i = 0; i < f->n_kv; i++)
        if (!drop_prefix || strncmp(f->kv[i].key, drop_prefix, drop_len) != 0)
            gguf_writer_add_kv(w, &f->kv[i]);
    if (add_keys)
        add_keys(w);
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const GgufTensor *t = &f->tensors[i];
        gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data);
    }
    cr_assert_eq(gguf_writer_write(w, dst, &err), 0, "%s", err.msg);
    gguf_writer_free(w);
    gguf_close(f);
}

const char *test_llama_cpp_tool(const char *tool)
{
    static char path[4096];
    const char *dir = getenv("LLAMA_CPP_BIN");
    snprintf(path, sizeof path, "%s/%s", dir && *dir ? dir : "../peers/llama.cpp/build/bin", tool);
    return access(path, X_OK) == 0 ? path : NULL;
}

/* The ids of one "eval: [ 'piece':id, ... ]" line that llama-cli logs at -lv 1 before each
 * forward pass (pieces have their unprintable bytes removed, so a line ends with ":ID ]");
 * returns how many it stored (at most cap). */
static int eval_line_ids(const char *line, const char *end, int *ids, int cap)
{
    int n = 0;
    for (const char *p = line; p < end && n < cap; p++) {
        /* an id is the digits between "':" and ", '" or " ]" */
        if (p[0] != '\'' || p[1] != ':')
            continue;
        char *after;
        long id = strtol(p + 2, &after, 10);
        if (after > p + 2 && (strncmp(after, ", '", 3) == 0 || strncmp(after, " ]", 2) == 0)) {
            ids[n++] = (int)id;
            p = after - 1;
        }
    }
    return n;
}

/* Greedy decoding by llama-cli: the ids llama.cpp tokenized the prompt into (BOS included,
 * at most 256) into prompt_ids, and up to n generated ids into out; returns how many it
 * generated. */
static int llama_cpp_greedy(const char *llama_cli, const char *model, const char *extra,
                            const char *prompt, int n, int *prompt_ids, int *n_prompt, int *out)
{
    /* -n n+1: the last token generated is never fed back, so it is never logged */
    char command[8192];
    snprintf(command, sizeof command,
             "{ %s -m %s %s -p '%s' -n %d --temp 0 -no-cnv -t 2 -c 512 -ctk f32 -ctv f32 "
             "--no-warmup -lv 1 --seed 1 < /dev/null 2>&1 > /dev/null; }",
             llama_cli, model, extra, prompt, n + 1);
    char *log;
    int status = test_run_capture(command, &log);
    cr_assert_eq(status, 0, "llama-cli failed (%d): %s", status, log);
    int generated = 0, lines = 0;
    for (const char *p = strstr(log, "eval: ["); p; p = strstr(p + 1, "eval: [")) {
        const char *end = strchr(p, '\n');
        end = end ? end : p + strlen(p);
        if (lines++ == 0)
            *n_prompt = eval_line_ids(p, end, prompt_ids, 256);
        else if (generated < n)
            generated += eval_line_ids(p, end, out + generated, n - generated);
    }
    cr_assert_gt(lines, 0, "llama-cli printed no tokens: %s", log);
    free(log);
    return generated;
}

int test_greedy_equals_llama_cpp(const char *llama_cli, const char *model, const char *prompt,
                                 int n, float margin, int *ours)
{
    return test_greedy_lora_equals_llama_cpp(llama_cli, model, NULL, 1.0f, prompt, n, margin,
                                             ours);
}

int test_greedy_lora_equals_llama_cpp(const char *llama_cli, const char *model,
                                      const char *adapter, float scale, const char *prompt,
                                      int n, float margin, int *ours)
{
    int prompt_ids[256], n_prompt = 0;
    int *theirs = malloc((size_t)n * sizeof *theirs);
    char extra[4200] = "";
    if (adapter)
        snprintf(extra, sizeof extra, "--lora-scaled %s %g", adapter, scale);
    int n_theirs = llama_cpp_greedy(llama_cli, model, extra, prompt, n, prompt_ids, &n_prompt,
                                    theirs);
    int n_ours = test_quill_greedy_lora(model, adapter, scale, prompt_ids, n_prompt, n, margin,
                                        ours);
    int compared = n_ours < n_theirs ? n_ours : n_theirs;
    for (int t = 0; t < compared; t++)
        cr_assert_eq(ours[t], theirs[t], "%s: greedy token %d is %d in quill, %d in llama.cpp",
                     model, t, ours[t], theirs[t]);
    cr_log_info("%s: %d greedy tokens equal (llama.cpp generated %d, quill %d before a near "
                "tie)", model, compared, n_theirs, n_ours);
    free(theirs);
    return compared;
}

int test_quill_greedy(const char *model_path, const int *prompt, int n_prompt, int n,
                      float margin, int *out)
{
    return test_quill_greedy_lora(model_path, NULL, 1.0f, prompt, n_prompt, n, margin, out);
}

int test_quill_greedy_lora(const char *model_path, const char *adapter_path, float scale,
                           const int *prompt, int n_prompt, int n, float margin, int *out)
{
    Model m;
    Tokenizer tok;
    Error err;
    cr_assert_eq(model_file_load(model_path, &m, &tok, &err), 0, "%s", err.msg);
    InferContext ctx;
    InferParams params = {.n_seq = 1, .n_ctx = n_prompt + n, .cache_type = GGML_TYPE_F32};
    cr_assert_eq(infer_init(&ctx, &m, &params, &err), 0, "%s", err.msg);
    LoraAdapter adapter = {0};
    if (adapter_path) {
        cr_assert_eq(lora_adapter_load(&adapter, adapter_path, &m, &err), 0, "%s", err.msg);
        LoraUse use = {&adapter, scale};
        cr_assert_eq(infer_set_lora(&ctx, &use, 1, &err), 0, "%s", err.msg);
    }
    cr_assert_eq(infer_decode(&ctx, 0, prompt, n_prompt, &err), 0, "%s", err.msg);
    int count = 0;
    while (count < n) {
        const float *logits = infer_logits(&ctx, 0);
        int best = 0, second = 1;
        if (logits[second] > logits[best])
            best = 1, second = 0;
        for (int v = 2; v < m.config.vocab_size; v++) {
            if (logits[v] > logits[best]) {
                second = best;
                best = v;
            } else if (logits[v] > logits[second]) {
                second = v;
            }
        }
        if (logits[best] - logits[second] < margin)
            break;
        out[count++] = best;
        if (best == tok.eos_id || count == n)
            break;
        cr_assert_eq(infer_decode(&ctx, 0, &best, 1, &err), 0, "%s", err.msg);
    }
    infer_free(&ctx);
    lora_adapter_free(&adapter);
    tokenizer_free(&tok);
    model_free(&m);
    return count;
}

SamplerParams test_sampler_params_off(void)
{
    SamplerParams p;
    sampler_params_default(&p);
    p.temperature = 1.0f;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.typical_p = 1.0f;
    return p;
}

/* Path of Debian's python3, where make deps installs python3-jsonschema. */
#define PYTHON "/usr/bin/python3"

void test_json_validator_or_skip(void)
{
    char *out;
    int status = test_run_capture(PYTHON " -c 'import jsonschema' 2>&1", &out);
    free(out);
    if (status == 0)
        return;
    if (test_in_ci())
        cr_assert_fail("python3-jsonschema is missing (make deps installs it)");
    cr_skip_test("python3-jsonschema is missing (make deps installs it): test skipped");
}

char *test_json_validate_pairs(const char *path)
{
    char command[1024];
    snprintf(command, sizeof command,
             PYTHON " -c '\n"
             "import json, sys, jsonschema\n"
             "for schema, text in json.load(open(sys.argv[1])):\n"
             "    try:\n"
             "        jsonschema.validate(json.loads(text), json.loads(schema))\n"
             "        print(\"valid\")\n"
             "    except Exception as e:\n"
             "        print(\"invalid:\", repr(text), str(e).splitlines()[0])\n"
             "' %s 2>&1",
             path);
    char *out;
    int status = test_run_capture(command, &out);
    cr_assert_eq(status, 0, "the validator failed: %s", out);
    return out;
}

size_t test_file_bytes(const char *path, char **data)
{
    size_t len;
    Error err;
    cr_assert_eq(file_read_all(path, data, &len, &err), 0, "%s", err.msg);
    return len;
}

void test_expect_same_file(const char *a, const char *b)
{
    char *x, *y;
    size_t nx = test_file_bytes(a, &x), ny = test_file_bytes(b, &y);
    cr_expect(nx == ny && memcmp(x, y, nx) == 0, "%s and %s differ", a, b);
    free(x);
    free(y);
}

/* The "loss" values of log.jsonl, in order, as text (exact digits). */
static char *logged_losses(const char *dir)
{
    char path[512], *text;
    snprintf(path, sizeof path, "%s/log.jsonl", dir);
    test_file_bytes(path, &text);
    char *out = calloc(strlen(text) + 1, 1);
    for (char *p = strstr(text, "\"loss\":"); p; p = strstr(p + 1, "\"loss\":")) {
        strncat(out, p, strcspn(p, ","));
        strcat(out, "\n");
    }
    free(text);
    return out;
}

void test_resume_is_exact(const char *flags, int steps)
{
    const char *dir = test_make_tmpdir();
    const char *corpus = test_write_corpus(dir);
    char whole[256], split[256], a[512], b[512];
    snprintf(whole, sizeof whole, "%s/whole", dir);
    snprintf(split, sizeof split, "%s/split", dir);
    quill_ok("train %s --data %s --out %s --steps %d", flags, corpus, whole, steps);
    quill_ok("train %s --data %s --out %s --steps %d --decay-steps %d", flags, corpus, split,
             steps / 2, steps);
    quill_ok("train --resume %s --steps %d", split, steps);
    const char *files[] = {"model.gguf", "train_state"};
    for (int f = 0; f < 2; f++) {
        snprintf(a, sizeof a, "%s/%s", whole, files[f]);
        snprintf(b, sizeof b, "%s/%s", split, files[f]);
        test_expect_same_file(a, b);
    }
    char *la = logged_losses(whole), *lb = logged_losses(split);
    cr_expect_str_eq(la, lb, "logged losses differ");
    cr_expect_gt(strlen(la), (size_t)steps * 8, "%d steps logged", steps);
    free(la);
    free(lb);
}

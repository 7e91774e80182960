/* The quill binary end to end: training, resuming, checkpoints that survive being killed,
 * and bad input that must give one clear error line and a non-zero exit, never a crash. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fileio.h"
#include "gguf.h"
#include "loader.h"
#include "test_util.h"

#define TINY "--config configs/tiny.json --eval-every 5 --eval-batches 2 --log-every 1"

Test(cli, resume_continues_exactly, .timeout = 120)
{
    test_resume_is_exact(TINY " --warmup 4", 16);
}

Test(cli, resume_with_consecutive_windows_continues_exactly, .timeout = 120)
{
    test_resume_is_exact(TINY " --no-shuffle --grad-accum 2", 6);
}

Test(cli, first_loss_is_near_ln_vocab_and_training_learns, .timeout = 120)
{
    const char *dir = test_make_tmpdir();
    const char *corpus = test_write_corpus(dir);
    char run[256], path[512], *text;
    snprintf(run, sizeof run, "%s/run", dir);
    quill_ok("train " TINY " --data %s --out %s --steps 60", corpus, run);
    snprintf(path, sizeof path, "%s/log.jsonl", run);
    test_file_bytes(path, &text);
    float first, last = 0.0f, vocab_log;
    cr_assert_eq(sscanf(text, "{\"step\":1,\"loss\":%f", &first), 1, "%s", text);
    const char *step60 = strstr(text, "{\"step\":60,\"loss\":");
    cr_assert_not_null(step60, "step 60 not logged:\n%s", text);
    sscanf(step60, "{\"step\":60,\"loss\":%f", &last);
    free(text);
    Model m;
    Tokenizer tok;
    Error err;
    snprintf(path, sizeof path, "%s/model.gguf", run);
    cr_assert_eq(model_file_load(path, &m, &tok, &err), 0, "%s", err.msg);
    vocab_log = logf((float)m.config.vocab_size);
    cr_expect(fabsf(first - vocab_log) < 0.1f, "first loss %g, ln V %g", first, vocab_log);
    cr_expect_lt(last, first - 1.0f, "60 steps should learn: %g -> %g", first, last);
    model_free(&m);
    tokenizer_free(&tok);
}

Test(cli, steps_zero_writes_the_initial_model)
{
    const char *dir = test_make_tmpdir();
    const char *corpus = test_write_corpus(dir);
    char run[256], path[512];
    snprintf(run, sizeof run, "%s/run", dir);
    quill_ok("train --config configs/tiny.json --data %s --out %s --steps 0", corpus, run);
    snprintf(path, sizeof path, "%s/model.gguf", run);
    Model m;
    Tokenizer tok;
    Error err;
    cr_assert_eq(model_file_load(path, &m, &tok, &err), 0, "%s", err.msg);
    cr_expect_eq(m.config.n_layers, 2);
    model_free(&m);
    tokenizer_free(&tok);
    snprintf(path, sizeof path, "%s/config.json", run);
    char *json;
    test_file_bytes(path, &json);
    cr_expect_not_null(strstr(json, "\"vocab_size\":"), "resolved config saved");
    free(json);
}

/* Kills a run that saves every step at random moments: each time, both checkpoint files
 * must still open and load. (test_fileio.c shows deterministically that a writer dying
 * before its commit leaves the old file; this is the same property end to end.) */
Test(cli, checkpoints_survive_sigkill, .timeout = 180)
{
    const char *dir = test_make_tmpdir();
    const char *corpus = test_write_corpus(dir);
    char run[256], model_path[512], state_path[512], command[2048];
    snprintf(run, sizeof run, "%s/run", dir);
    snprintf(model_path, sizeof model_path, "%s/model.gguf", run);
    snprintf(state_path, sizeof state_path, "%s/train_state", run);
    quill_ok("train --config configs/tiny.json --data %s --out %s --steps 1", corpus, run);
    srand(42);
    for (int round = 0; round < 12; round++) {
        snprintf(command, sizeof command, "%s train --resume %s --steps 100000 --save-every 1",
                 test_quill_bin(), run);
        pid_t pid = fork();
        cr_assert_neq(pid, -1);
        if (pid == 0) {
            freopen("/dev/null", "w", stdout);
            execl("/bin/sh", "sh", "-c", command, (char *)NULL);
            _exit(127);
        }
        struct timespec pause = {0, (150 + rand() % 500) * 1000000L};
        nanosleep(&pause, NULL);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        /* the shell's child (quill) may outlive the shell: end it too */
        snprintf(command, sizeof command, "pkill -KILL -f 'train --resume %s ' 2>/dev/null", run);
        system(command);
        for (int f = 0; f < 2; f++) {
            const char *path = f ? state_path : model_path;
            GgufFile *g;
            Error err;
            cr_assert_eq(gguf_open(&g, path, &err), 0, "round %d: %s", round, err.msg);
            gguf_close(g);
        }
        Model m;
        Tokenizer tok;
        Error err;
        cr_assert_eq(model_file_load(model_path, &m, &tok, &err), 0, "round %d: %s", round,
                     err.msg);
        model_free(&m);
        tokenizer_free(&tok);
    }
}

Test(cli, divergence_stops_and_keeps_the_last_checkpoint, .timeout = 120)
{
    const char *dir = test_make_tmpdir();
    const char *corpus = test_write_corpus(dir);
    char run[256], path[512], *before, *after;
    snprintf(run, sizeof run, "%s/run", dir);
    quill_ok("train --config configs/tiny.json --data %s --out %s --steps 2 --optimizer sgd",
             corpus, run);
    snprintf(path, sizeof path, "%s/model.gguf", run);
    size_t n_before = test_file_bytes(path, &before);
    /* plain SGD at lr 10 without clipping blows up within a few steps */
    expect_clean_error("diverged", "train --resume %s --steps 200 --lr 10 --min-lr 10 "
                                   "--grad-clip 0",
                       run);
    expect_clean_error("key 'optimizer' cannot change when resuming",
                       "train --resume %s --steps 200 --optimizer adamw", run);
    size_t n_after = test_file_bytes(path, &after);
    cr_expect(n_before == n_after && memcmp(before, after, n_before) == 0,
              "the checkpoint changed");
    free(before);
    free(after);
}

Test(cli, bad_input_gets_one_clear_error_line, .timeout = 120)
{
    const char *dir = test_make_tmpdir();
    const char *corpus = test_write_corpus(dir);
    char path[512], run[256];
    snprintf(run, sizeof run, "%s/run", dir);
    expect_clean_error("unknown command", "frobnicate");
    expect_clean_error("unknown flag --topk", "generate x.gguf --topk 3");
    expect_clean_error("unknown flag --colour", "train --colour red");
    expect_clean_error("--batch-size expects an integer", "train --batch-size lots");
    expect_clean_error("missing.json: No such file", "train --config missing.json --data x --out %s", run);
    snprintf(path, sizeof path, "%s/bad.json", dir);
    FILE *fp = fopen(path, "w");
    fputs("{\"layers\": 2, \"learning_rate\": 0.1}", fp);
    fclose(fp);
    expect_clean_error("unknown key 'learning_rate'", "train --config %s --data %s --out %s",
                       path, corpus, run);
    expect_clean_error("none.gguf: No such file", "info %s/none.gguf", dir);
    expect_clean_error("no training data", "train --config configs/tiny.json --out %s", run);
    expect_clean_error("no train_state", "train --resume %s/empty", dir);

    /* a truncated model */
    quill_ok("train --config configs/tiny.json --data %s --out %s --steps 0", corpus, run);
    char model[512], truncated[512], *bytes;
    snprintf(model, sizeof model, "%s/model.gguf", run);
    snprintf(truncated, sizeof truncated, "%s/truncated.gguf", dir);
    size_t n = test_file_bytes(model, &bytes);
    Error err;
    cr_assert_eq(file_write_atomic(truncated, bytes, n / 2, &err), 0);
    free(bytes);
    expect_clean_error("truncated.gguf", "generate %s --prompt hi", truncated);
    expect_clean_error("truncated.gguf", "info %s", truncated);
    expect_clean_error("truncated.gguf", "eval %s --data %s", truncated, corpus);
    /* a run directory is not overwritten by accident */
    expect_clean_error("already holds a training run",
                       "train --config configs/tiny.json --data %s --out %s", corpus, run);
    /* the prompt is longer than the context (64 tokens) */
    char long_prompt[400];
    memset(long_prompt, 'a', 300);
    long_prompt[300] = '\0';
    expect_clean_error("the prompt has", "generate %s --prompt %s", model, long_prompt);
    expect_clean_error("--seq-len 500 exceeds", "eval %s --data %s --seq-len 500", model, corpus);
}

/* Empty, binary or too little data: one clear error, and no run directory is left. Binary
 * means a NUL byte, or more than 1 byte in 100 that is not part of valid UTF-8, in the
 * first 64 KB of a file (docs/training.md): an executable (the quill binary itself),
 * random bytes, Latin-1 text with an accent every few letters. */
Test(cli, unusable_data_is_refused_and_nothing_is_written, .timeout = 60)
{
    const char *dir = test_make_tmpdir();
    char empty[512], junk_path[512], latin1_path[512], run[512];
    snprintf(empty, sizeof empty, "%s/empty.txt", dir);
    snprintf(junk_path, sizeof junk_path, "%s/binary.bin", dir);
    snprintf(latin1_path, sizeof latin1_path, "%s/latin1.txt", dir);
    snprintf(run, sizeof run, "%s/run", dir);
    Error err;
    cr_assert_eq(file_write_atomic(empty, "", 0, &err), 0, "%s", err.msg);
    const unsigned char junk[] = {0xff, 0xfe, 0x80, 0xc0, 0xf8, 0xbf};
    cr_assert_eq(file_write_atomic(junk_path, junk, sizeof junk, &err), 0, "%s", err.msg);
    char latin1[2000] = "";
    for (int i = 0; i < 100; i++)
        strcat(latin1, "caf\xe9 cr\xe8me "); /* 2 of 11 bytes are no UTF-8 */
    cr_assert_eq(file_write_atomic(latin1_path, latin1, strlen(latin1), &err), 0, "%s", err.msg);
    const struct {
        const char *path, *needle;
    } cases[] = {
        {empty, "the training text is empty"},
        {junk_path, "binary.bin is not UTF-8 text: 6 of its first 6 bytes"},
        {latin1_path, "latin1.txt is not UTF-8 text: 200 of its first 1100 bytes"},
        {test_quill_bin(), "is not text: a NUL byte at offset"},
    };
    const char *tokenizers[] = {"char", "bpe"};
    int refused = 0;
    for (int i = 0; i < 2; i++) {
        for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
            expect_clean_error(cases[c].needle,
                               "train --config configs/tiny.json --tokenizer %s --data %s --out %s",
                               tokenizers[i], cases[c].path, run);
            refused++;
        }
        cr_expect_neq(access(run, F_OK), 0, "%s was created", run);
    }
    cr_assert_eq(refused, 8);
    /* a stray byte or two in a text is no reason to refuse it */
    const char *corpus = test_write_corpus(dir);
    FILE *fp = fopen(corpus, "r+b");
    fseek(fp, 100, SEEK_SET);
    fputc(0xff, fp);
    fclose(fp);
    char trained[512];
    snprintf(trained, sizeof trained, "%s/trained", dir);
    quill_ok("train --config configs/tiny.json --data %s --out %s --steps 1", corpus, trained);
    /* eval reads a text too */
    expect_clean_error("is not UTF-8 text", "eval %s --data %s", trained, latin1_path);
    /* text that holds too few tokens is found out only once it is tokenized into the run
     * directory: the directory and the cache go again */
    char tiny[512];
    snprintf(tiny, sizeof tiny, "%s/tiny.txt", dir);
    cr_assert_eq(file_write_atomic(tiny, "hello world", 11, &err), 0, "%s", err.msg);
    expect_clean_error("too few for a training and a validation window",
                       "train --config configs/tiny.json --data %s --out %s", tiny, run);
    cr_expect_neq(access(run, F_OK), 0, "%s was left behind", run);
}

/* Every command parses flags the same way: --name=value and --name value. */
Test(cli, flags_take_both_spellings_everywhere, .timeout = 60)
{
    const char *dir = test_make_tmpdir();
    const char *corpus = test_write_corpus(dir);
    char run[256];
    snprintf(run, sizeof run, "%s/run", dir);
    quill_ok("train --config=configs/tiny.json --data=%s --out=%s --steps=2 --no-shuffle", corpus,
             run);
    char *out;
    cr_assert_eq(quill(&out, "generate %s/model.gguf --prompt=the --max-tokens=3 --seed=1", run),
                 0, "%s", out);
    free(out);
    /* a run directory stands for its model.gguf, for every command that reads a model */
    const char *commands[] = {"generate %s --prompt the -n 3", "info %s", "tokenize %s the",
                              "eval %s --data %s --seq-len 8"};
    for (int i = 0; i < 4; i++) {
        char args[1024];
        snprintf(args, sizeof args, commands[i], run, corpus);
        cr_assert_eq(quill(&out, "%s", args), 0, "quill %s: %s", args, out);
        free(out);
    }
    expect_clean_error("--steps expects an integer", "train --resume %s --steps=many", run);
}

/* Expects `quill ARGS` to fail with one clear line naming needle before any measuring has
 * started: no line of the machine's figures (training bench) or of a model's (inference
 * bench) was printed. */
static void expect_bench_refused(const char *needle, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void expect_bench_refused(const char *needle, const char *fmt, ...)
{
    char args[2048], *out;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    expect_clean_error(needle, "%s", args);
    quill(&out, "%s", args);
    cr_expect_null(strstr(out, "machine:"), "quill %s measured first:\n%s", args, out);
    cr_expect_null(strstr(out, "tok/s"), "quill %s measured first:\n%s", args, out);
    free(out);
}

/* quill bench takes a run directory as MODEL, as every command that reads a model does;
 * arguments that name no model and no config, or data it cannot train on, are refused
 * before the seconds of measuring start. */
Test(cli, bench_takes_a_run_directory_and_refuses_bad_arguments_first, .timeout = 120)
{
    const char *dir = test_make_tmpdir();
    const char *corpus = test_write_corpus(dir);
    char run[256], empty[256], *out;
    snprintf(run, sizeof run, "%s/run", dir);
    snprintf(empty, sizeof empty, "%s/empty", dir);
    quill_ok("train --config configs/tiny.json --data %s --out %s --steps 0", corpus, run);
    cr_assert_eq(quill(&out, "bench %s -p 4 -n 2 -r 1 -t 1", run), 0, "%s", out);
    cr_expect(strstr(out, "pp4: ") && strstr(out, "tg2: "), "%s", out);
    free(out);
    cr_assert_eq(mkdir(empty, 0777), 0);
    expect_bench_refused("none.gguf: No such file", "bench %s/none.gguf -r 1", dir);
    expect_bench_refused("missing.json: No such file", "bench %s/missing.json", dir);
    expect_bench_refused("Is a directory", "bench %s", empty);
    expect_bench_refused("nothing.txt: No such file", "bench configs/tiny.json --data %s/nothing.txt",
                         dir);
    expect_bench_refused("--machine measures the machine alone", "bench --machine configs/tiny.json");
}

/* quill bench --machine prints the machine's two figures and trains nothing, whatever the
 * --data default: no data file is needed (a script such as tests/finetune_bench.sh reads
 * the sgemm peak from it). */
Test(cli, bench_machine_prints_the_machine_alone, .timeout = 120)
{
    char *out;
    cr_assert_eq(quill(&out, "bench --machine --threads 1 --data /nonexistent.txt"), 0, "%s", out);
    double peak = 0, triad = 0;
    const char *p = strstr(out, "sgemm peak"), *m = strstr(out, "memory triad");
    cr_assert(p && m, "%s", out);
    cr_expect_eq(sscanf(p, "sgemm peak %lf GFLOP/s", &peak), 1, "%s", out);
    cr_expect_eq(sscanf(m, "memory triad %lf GB/s", &triad), 1, "%s", out);
    cr_expect_gt(peak, 0.0, "%s", out);
    cr_expect_gt(triad, 0.0, "%s", out);
    cr_expect_null(strstr(out, "training:"), "--machine trained:\n%s", out);
    free(out);
}

/* The longest stretch of text between two carriage returns or newlines that starts with
 * "step ", with the erase-to-end-of-line escape taken out; *lines counts such stretches. */
static size_t longest_step_line(const char *out, int *lines)
{
    size_t longest = 0;
    *lines = 0;
    for (const char *p = out; *p;) {
        size_t len = strcspn(p, "\r\n");
        if (strncmp(p, "step ", 5) == 0) {
            const char *erase = strstr(p, "\033[K");
            size_t visible = erase && erase < p + len ? (size_t)(erase - p) : len;
            longest = visible > longest ? visible : longest;
            (*lines)++;
        }
        p += len + (p[len] != '\0');
    }
    return longest;
}

/* On an 80-column terminal (a pseudo-terminal from script(1), set to 80 columns) the live
 * progress line stays within 79 characters, so it never wraps into a line per update. */
Test(cli, the_progress_line_fits_an_80_column_terminal, .timeout = 60)
{
    if (system("command -v script > /dev/null 2>&1") != 0)
        cr_skip_test("script(1) is missing (util-linux): no terminal to run quill in");
    const char *dir = test_make_tmpdir();
    const char *corpus = test_write_corpus(dir);
    char command[2048], *out;
    snprintf(command, sizeof command,
             "script -qec 'stty cols 80; %s train --config configs/tiny.json --data %s "
             "--out %s/run --steps 5' /dev/null",
             test_quill_bin(), corpus, dir);
    cr_assert_eq(test_run_capture(command, &out), 0, "%s", out);
    int lines;
    size_t longest = longest_step_line(out, &lines);
    cr_expect_geq(lines, 5, "a live line per step:\n%s", out);
    cr_expect_leq(longest, (size_t)79, "a progress line of %zu characters:\n%s", longest, out);
    cr_expect_not_null(strstr(out, "\033[K"), "not drawn as a live line:\n%s", out);
    free(out);
}

/* --steps below the checkpoint's step: an error, and nothing in the run is touched. */
Test(cli, resume_to_fewer_steps_than_done_changes_nothing, .timeout = 60)
{
    const char *dir = test_make_tmpdir();
    const char *corpus = test_write_corpus(dir);
    char run[256], state[512], saved[512], log[512], saved_log[512];
    snprintf(run, sizeof run, "%s/run", dir);
    quill_ok("train --config configs/tiny.json --data %s --out %s --steps 3", corpus, run);
    snprintf(state, sizeof state, "%s/train_state", run);
    snprintf(saved, sizeof saved, "%s/train_state.before", dir);
    snprintf(log, sizeof log, "%s/log.jsonl", run);
    snprintf(saved_log, sizeof saved_log, "%s/log.before", dir);
    char *bytes;
    Error err;
    size_t n = test_file_bytes(state, &bytes);
    cr_assert_eq(file_write_atomic(saved, bytes, n, &err), 0);
    free(bytes);
    n = test_file_bytes(log, &bytes);
    cr_assert_eq(file_write_atomic(saved_log, bytes, n, &err), 0);
    free(bytes);
    expect_clean_error("already at step 3, past --steps 2", "train --resume %s --steps 2", run);
    quill_ok("train --resume %s --steps 3", run);
    test_expect_same_file(state, saved);
    test_expect_same_file(log, saved_log);
}

/* A run killed during its final evaluation leaves its last checkpoint and a log whose last
 * line is the last step's; loss.svg is not drawn yet. This test makes that directory from a
 * finished run (takes the evaluation's line off the log and the picture away), then
 * resumes it: the resume must do what was left, the same evaluation (the same model on the
 * same split: the same line, to the digit) and the picture, without training or rewriting
 * the checkpoint; a second resume then has nothing to do. */
Test(cli, resume_finishes_a_run_killed_during_its_final_evaluation, .timeout = 60)
{
    const char *dir = test_make_tmpdir();
    const char *corpus = test_write_corpus(dir);
    char run[256], log[512], svg[512], state[512], *text, *state_before, *state_after, *out;
    snprintf(run, sizeof run, "%s/run", dir);
    snprintf(log, sizeof log, "%s/log.jsonl", run);
    snprintf(svg, sizeof svg, "%s/loss.svg", run);
    snprintf(state, sizeof state, "%s/train_state", run);
    quill_ok("train " TINY " --data %s --out %s --steps 3", corpus, run);
    size_t len = test_file_bytes(log, &text);
    char *eval_line = strrchr(text, '{'); /* the last line: the final evaluation */
    cr_assert(eval_line && strstr(eval_line, "\"val_loss\"") &&
                  strncmp(eval_line, "{\"step\":3,", 10) == 0,
              "%s", text);
    char *final_eval = strdup(eval_line);
    Error err;
    cr_assert_eq(file_write_atomic(log, text, (size_t)(eval_line - text), &err), 0);
    cr_assert_eq(remove(svg), 0);
    size_t n_state = test_file_bytes(state, &state_before);

    cr_assert_eq(quill(&out, "train --resume %s", run), 0, "%s", out);
    cr_expect_not_null(strstr(out, "val (whole split"), "%s", out);
    cr_expect_null(strstr(out, "nothing to do"), "%s", out);
    free(out);
    free(text);
    cr_expect_eq(test_file_bytes(log, &text), len, "the log is whole again:\n%s", text);
    cr_expect_str_eq(strrchr(text, '{'), final_eval);
    cr_expect_eq(access(svg, F_OK), 0, "no %s", svg);
    cr_expect_eq(test_file_bytes(state, &state_after), n_state);
    cr_expect_eq(memcmp(state_before, state_after, n_state), 0, "train_state was rewritten");

    cr_assert_eq(quill(&out, "train --resume %s", run), 0, "%s", out);
    cr_expect_not_null(strstr(out, "already at step 3: nothing to do"), "%s", out);
    free(out);
    free(text);
    free(final_eval);
    free(state_before);
    free(state_after);
}

/* A bit flipped in a train_state tensor keeps the value a finite float, so only the
 * checksum can tell: resume refuses, naming the file and the tensor's byte range. */
Test(cli, a_damaged_train_state_is_refused_naming_the_tensor, .timeout = 60)
{
    const char *dir = test_make_tmpdir();
    const char *corpus = test_write_corpus(dir);
    char run[256], state[512];
    snprintf(run, sizeof run, "%s/run", dir);
    quill_ok("train --config configs/tiny.json --data %s --out %s --steps 2", corpus, run);
    snprintf(state, sizeof state, "%s/train_state", run);
    GgufFile *f;
    Error err;
    cr_assert_eq(gguf_open(&f, state, &err), 0, "%s", err.msg);
    const GgufTensor *t = gguf_find_tensor(f, "blk.1.ffn_up.weight");
    cr_assert_not_null(t);
    long byte = (long)(f->data_offset + t->offset + 40); /* the low byte of element 10 */
    gguf_close(f);
    char *bytes;
    size_t n = test_file_bytes(state, &bytes);
    bytes[byte] ^= 0x01;
    cr_assert_eq(file_write_atomic(state, bytes, n, &err), 0);
    free(bytes);
    expect_clean_error("tensor 'blk.1.ffn_up.weight' (bytes", "train --resume %s --steps 4", run);
    expect_clean_error("train_state", "train --resume %s --steps 4", run);
}

/* quill info and quill tokenize on a byte-level BPE vocabulary (Qwen3: no bos is added). */
Test(cli, info_and_tokenize_byte_level_bpe, .timeout = 60)
{
    SHARED_FILE_OR_SKIP(vocab, "vocab/ggml-vocab-qwen3.gguf");
    char *out;
    cr_assert_eq(quill(&out, "info %s", vocab), 0, "%s", out);
    cr_expect(strstr(out, "tokenizer: byte-level BPE, 151936 tokens") &&
                  strstr(out, "pre-tokenizer qwen2"),
              "%s", out);
    free(out);
    cr_assert_eq(quill(&out, "tokenize %s 'Hello world'", vocab), 0, "%s", out);
    cr_expect_str_eq(out, "9707 1879\n");
    free(out);
    cr_assert_eq(quill(&out, "tokenize %s --special '<|im_start|>user'", vocab), 0, "%s", out);
    cr_expect_str_eq(out, "151644 872\n");
    free(out);
}

/* quill info's size lines for the random llama stored as Q8_0, against numbers computed by
 * hand from its shape (dim 256, 2 layers, 4 heads of 64, 2 kv heads, ffn 768, vocab 512):
 *   per block  2 norms of 256, q and o 256 x 256, k and v 128 x 256, 3 MLP matrices 768 x 256
 *              = 512 + 2 * 65536 + 2 * 32768 + 3 * 196608 = 786944 parameters
 *   model      2 blocks + output_norm 256 + token_embd and output 512 x 256 each = 1836288
 *   bytes      the 1280 norm weights stay F32 (4 bytes); the other 1835008 are Q8_0 blocks
 *              of 32 weights in 34 bytes: 5120 + 1835008 / 32 * 34 = 1954816
 *   bits       1954816 * 8 / 1836288 = 8.516
 *   KV cache   keys and values, 2 layers, 128 values per position (2 kv heads of 64):
 *              512 positions of f16 (the default for a file quill did not write) take
 *              2 * 2 * 512 * 128 * 2 = 524288 bytes; f32 twice that; q8_0 rows of 4 blocks
 *              of 34 bytes: 2 * 2 * 512 * 136 = 278528. */
Test(cli, info_prints_parameters_bits_per_weight_and_kv_cache_memory, .timeout = 60)
{
    SHARED_FILE_OR_SKIP(model, "models/qtest-Q8_0.gguf");
    char *out;
    cr_assert_eq(quill(&out, "info %s --context 512", model), 0, "%s", out);
    cr_expect(strstr(out, "size: 1836288 parameters (1.836M), weights 1954816 bytes (1.95 MB), "
                          "8.516 bits per weight\n") != NULL, "%s", out);
    cr_expect(strstr(out, "KV cache: 524288 bytes (0.52 MB) for 512 positions of f16") != NULL,
              "%s", out);
    free(out);
    const struct {
        const char *type;
        const char *expected;
    } cases[] = {
        {"f32", "KV cache: 1048576 bytes (1.05 MB) for 512 positions of f32"},
        {"q8_0", "KV cache: 278528 bytes (0.28 MB) for 512 positions of q8_0"},
    };
    int compared = 0;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        cr_assert_eq(quill(&out, "info %s -c 512 --cache-type %s", model, cases[i].type), 0, "%s",
                     out);
        cr_expect(strstr(out, cases[i].expected) != NULL, "%s", out);
        free(out);
        compared++;
    }
    cr_assert_eq(compared, 2);
    /* without --context, the model's own: context_length 256 */
    cr_assert_eq(quill(&out, "info %s", model), 0, "%s", out);
    cr_expect(strstr(out, "KV cache: 262144 bytes (0.26 MB) for 256 positions of f16") != NULL,
              "%s", out);
    free(out);
}

/* --verbose reports the KV cache's bytes and type: stories260K (5 layers, 4 kv heads of 8)
 * with a 5-token prompt and 3 tokens to generate holds 8 positions of 32 keys and 32 values
 * per layer, as f16 by default: 2 * 5 * 8 * 32 * 2 = 5120 bytes; as f32 10240. */
Test(cli, verbose_reports_the_kv_cache_bytes_and_type, .timeout = 60)
{
    SHARED_FILE_OR_SKIP(model, "models/stories260K.gguf");
    char *out;
    cr_assert_eq(quill(&out, "generate %s --prompt 'Once upon a time' -n 3 --temperature 0 "
                             "--ignore-eos --verbose", model), 0, "%s", out);
    cr_expect(strstr(out, "KV cache 5120 bytes = 0.01 MB (f16, 8 positions)") != NULL, "%s", out);
    free(out);
    cr_assert_eq(quill(&out, "generate %s --prompt 'Once upon a time' -n 3 --temperature 0 "
                             "--ignore-eos --verbose --cache-type f32", model), 0, "%s", out);
    cr_expect(strstr(out, "KV cache 10240 bytes = 0.01 MB (f32, 8 positions)") != NULL, "%s",
              out);
    free(out);
}

static int hex_nibble(char c)
{
    return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
}

/* With --no-echo stdout holds exactly the generated bytes: for stories260K at temperature 0
 * they are llama.cpp's greedy text, byte for byte (with the F32 KV cache llama.cpp's
 * reference ran with). */
Test(cli, no_echo_greedy_output_is_llama_cpp_text_byte_for_byte, .timeout = 60)
{
    SHARED_FILE_OR_SKIP(model, "models/stories260K.gguf");
    SHARED_FILE_OR_SKIP(ref_path, "models/stories260K.ref.json");
    char *ref_text;
    test_file_bytes(ref_path, &ref_text);
    const char *hex = strstr(ref_text, "\"greedy_text_hex\"");
    cr_assert_not_null(hex);
    hex = strchr(hex + 17, '"') + 1;
    size_t n_hex = strcspn(hex, "\"");
    char *expected = malloc(n_hex / 2 + 1);
    for (size_t i = 0; i < n_hex / 2; i++)
        expected[i] = (char)(hex_nibble(hex[2 * i]) * 16 + hex_nibble(hex[2 * i + 1]));
    char *out, *messages;
    int status;
    size_t n = quill_stdout(&out, &messages, &status,
                            "generate %s --prompt 'Once upon a time' --temperature 0 --no-echo "
                            "--max-tokens 200 --context 256 --cache-type f32", model);
    cr_assert_eq(status, 0, "%s", messages);
    cr_assert_eq(n, n_hex / 2, "%zu bytes, llama.cpp %zu", n, n_hex / 2);
    cr_expect_arr_eq(out, expected, n, "the greedy text differs from llama.cpp's");
    free(out);
    free(messages);
    free(expected);
    free(ref_text);
}

/* The same seed gives the same text on 1 and 2 threads; seed 0 is a seed like any other. */
Test(cli, a_seed_gives_the_same_text_on_any_thread_count, .timeout = 60)
{
    SHARED_FILE_OR_SKIP(model, "models/stories260K.gguf");
    char *texts[3], *messages;
    int status;
    const char *runs[3] = {"--seed 0 --threads 1", "--seed 0 --threads 2", "--seed 1 --threads 2"};
    for (int i = 0; i < 3; i++) {
        quill_stdout(&texts[i], &messages, &status,
                     "generate %s --prompt 'Once upon a time' --no-echo --max-tokens 60 "
                     "--temperature 1 %s", model, runs[i]);
        cr_assert_eq(status, 0, "%s", messages);
        free(messages);
    }
    cr_expect_str_eq(texts[0], texts[1], "1 and 2 threads differ");
    cr_expect_str_neq(texts[0], texts[2], "seeds 0 and 1 gave the same 60 tokens");
    for (int i = 0; i < 3; i++)
        free(texts[i]);
}

/* Stop strings end the text and are never printed; a full context stops with a message. */
Test(cli, stop_strings_and_a_full_context_end_the_text, .timeout = 60)
{
    SHARED_FILE_OR_SKIP(model, "models/stories260K.gguf");
    char *out, *messages;
    int status;
    quill_stdout(&out, &messages, &status,
                 "generate %s --prompt 'Once upon a time' --temperature 0 --no-echo "
                 "--stop ' Lily' --stop 'xyz'", model);
    cr_assert_eq(status, 0, "%s", messages);
    cr_expect_str_eq(out, ", there was a little girl named");
    free(out);
    free(messages);
    quill_stdout(&out, &messages, &status,
                 "generate %s --prompt 'Once upon a time' --temperature 0 --context 12", model);
    cr_assert_eq(status, 0, "%s", messages);
    cr_expect_not_null(strstr(messages, "the context of 12 positions is full"), "%s", messages);
    free(out);
    free(messages);
    quill_stdout(&out, &messages, &status,
                 "generate %s --prompt 'Once upon a time' --temperature 0 --context 12 "
                 "--context-shift --max-tokens 40 --no-echo", model);
    cr_assert_eq(status, 0, "%s", messages);
    cr_expect_null(strstr(messages, "is full"), "%s", messages);
    cr_expect_gt(strlen(out), 60, "context shift went on: %s", out);
    free(out);
    free(messages);
}

/* --output-file: one JSON object per sample, with its text, tokens and why it ended. */
Test(cli, samples_and_beams_go_to_json_lines, .timeout = 60)
{
    SHARED_FILE_OR_SKIP(model, "models/stories260K.gguf");
    const char *dir = test_make_tmpdir();
    char file[256], *out, *messages, *json;
    int status;
    snprintf(file, sizeof file, "%s/samples.jsonl", dir);
    quill_stdout(&out, &messages, &status,
                 "generate %s --prompt 'Once upon a time' --max-tokens 12 --num-samples 3 "
                 "--seed 4 --output-file %s", model, file);
    cr_assert_eq(status, 0, "%s", messages);
    cr_expect_not_null(strstr(out, "--- sample 3 of 3 (seed 6,"), "%s", out);
    test_file_bytes(file, &json);
    int lines = 0;
    for (char *p = json; (p = strstr(p, "{\"text\":")); p++)
        lines++;
    cr_expect_eq(lines, 3, "%s", json);
    cr_expect_not_null(strstr(json, "\"finish_reason\":\"length\",\"seed\":4"), "%s", json);
    free(out);
    free(messages);
    free(json);
    quill_stdout(&out, &messages, &status,
                 "generate %s --prompt 'Once upon a time' --max-tokens 12 --beam-size 3 "
                 "--num-samples 2", model);
    cr_assert_eq(status, 0, "%s", messages);
    cr_expect_not_null(strstr(out, "--- beam 2 of 2 (score"), "%s", out);
    free(out);
    free(messages);
}

/* The REPL driven through a pipe: settings change between prompts, a bad /set is one line
 * and the session goes on, /reset forgets, /quit leaves with status 0. */
Test(cli, the_repl_through_a_pipe, .timeout = 60)
{
    SHARED_FILE_OR_SKIP(model, "models/stories260K.gguf");
    const char *dir = test_make_tmpdir();
    char input[256], command[1024], *out;
    snprintf(input, sizeof input, "%s/input", dir);
    FILE *fp = fopen(input, "w");
    fputs("/set temperature=0\n/set max-tokens=10\nOnce upon a time\n/status\n"
          "/set temprature=1\n/set top-k=many\n/reset\nOnce upon a time\n/quit\nnot read\n", fp);
    fclose(fp);
    snprintf(command, sizeof command, "%s chat %s < %s", test_quill_bin(), model, input);
    int status = test_run_capture(command, &out);
    cr_assert_eq(status, 0, "%s", out);
    const char *first = strstr(out, ", there was a little girl named Lily");
    cr_assert_not_null(first, "%s", out);
    cr_expect_not_null(strstr(first + 1, ", there was a little girl named Lily"),
                       "after /reset the same prompt gives the same text: %s", out);
    cr_expect_not_null(strstr(out, "temperature          0\n"), "%s", out);
    cr_expect_not_null(strstr(out, "max-tokens           10\n"), "%s", out);
    cr_expect_not_null(strstr(out, "quill: /set: unknown setting 'temprature'"), "%s", out);
    cr_expect_not_null(strstr(out, "quill: /set top-k expects an integer, got 'many'"), "%s",
                       out);
    cr_expect_not_null(strstr(out, "[the conversation is forgotten]"), "%s", out);
    free(out);
}

/* Ctrl+C while a reply streams stops the reply, and the session goes on (a /status after
 * it is answered); Ctrl+C at the prompt then leaves with status 0. */
Test(cli, ctrl_c_stops_a_reply_and_then_leaves, .timeout = 60)
{
    SHARED_FILE_OR_SKIP(model, "models/stories260K.gguf");
    TestProcess r;
    test_process_start(&r, false, "chat %s --max-tokens 16000000 --context-shift --temperature 1",
                       model);
    test_process_type(&r, "Once upon a time\n");
    cr_assert(test_process_wait_for(&r, 0, " "), "no reply started: %s", r.seen);
    while (r.n_seen < 2000 && test_process_wait_for(&r, r.n_seen, " "))
        ; /* well into a reply that would take minutes */
    kill(r.pid, SIGINT);
    cr_assert(test_process_wait_for(&r, 0, "[stopped]"), "the reply did not stop: %.300s",
              r.seen);
    test_process_type(&r, "/status\n");
    cr_assert(test_process_wait_for(&r, 0, "max-tokens"), "no /status after the stop: %.300s",
              r.seen);
    kill(r.pid, SIGINT);
    int status = test_process_finish(&r);
    cr_expect_eq(status, 0, "status %d", status);
}

/* Ctrl+C during training finishes the step, saves, says how to go on, and exits with 130,
 * the status a shell gives a process SIGINT ended, so that a script can tell an
 * interrupted run from a finished one; the resume says where it starts. */
Test(cli, ctrl_c_in_training_saves_and_exits_130, .timeout = 120)
{
    const char *dir = test_make_tmpdir();
    const char *corpus = test_write_corpus(dir);
    char args[1024], run[256], state[512];
    snprintf(run, sizeof run, "%s/run", dir);
    snprintf(state, sizeof state, "%s/train_state", run);
    snprintf(args, sizeof args, "train " TINY " --data %s --out %s --steps 1000000", corpus, run);
    TestProcess r;
    test_process_start(&r, false, "%s", args);
    cr_assert(test_process_wait_for(&r, 0, "\nstep 2/1000000: loss"), "no step: %s", r.seen);
    kill(r.pid, SIGINT);
    cr_assert(test_process_wait_for(&r, 0, "interrupted after step "), "%s", r.seen);
    int step = 0;
    sscanf(strstr(r.seen, "interrupted after step ") + 23, "%d", &step);
    int status = test_process_finish(&r);
    cr_expect_eq(status, 130, "status %d: %s", status, r.seen);
    cr_assert_geq(step, 2, "%s", r.seen);
    cr_expect_eq(access(state, F_OK), 0, "no checkpoint");
    char *out, expected[128];
    cr_assert_eq(quill(&out, "train --resume %s --steps %d", run, step + 1), 0, "%s", out);
    snprintf(expected, sizeof expected, "resuming from step %d of %d\n", step, step + 1);
    cr_expect_not_null(strstr(out, expected), "no '%s' in:\n%s", expected, out);
    free(out);
}

/* Every periodic checkpoint says so in one line; the last one is the final save's line. */
Test(cli, each_periodic_checkpoint_is_reported, .timeout = 60)
{
    const char *dir = test_make_tmpdir();
    const char *corpus = test_write_corpus(dir);
    char *out;
    cr_assert_eq(quill(&out, "train " TINY " --data %s --out %s/run --steps 5 --save-every 2",
                       corpus, dir), 0, "%s", out);
    int reported = 0;
    for (const char *p = out; (p = strstr(p, ": checkpoint saved in ")); p++)
        reported++;
    cr_expect_eq(reported, 2, "%s", out);
    cr_expect(strstr(out, "\nstep 2: checkpoint saved in ") && strstr(out, "\nstep 4: checkpoint "
                                                                       "saved in "), "%s", out);
    free(out);
}

/* A bpe vocabulary smaller than asked for says why it stopped: the learner merges a pair
 * of pieces only when it occurs at least twice, and a small corpus runs out of them. */
Test(cli, a_bpe_vocabulary_that_stops_short_says_why, .timeout = 60)
{
    const char *dir = test_make_tmpdir();
    const char *corpus = test_write_corpus(dir);
    char *out;
    cr_assert_eq(quill(&out, "train --config configs/tiny.json --tokenizer bpe --vocab-size "
                             "100000 --data %s --out %s/short --steps 0", corpus, dir),
                 0, "%s", out);
    int n_vocab = 0;
    const char *line = strstr(out, "tokenizer: bpe, ");
    cr_assert_not_null(line, "%s", out);
    sscanf(line, "tokenizer: bpe, %d tokens", &n_vocab);
    cr_expect(n_vocab > 259 && n_vocab < 100000, "%s", out);
    cr_expect_not_null(strstr(line, " tokens (not the 100000 asked for: no pair of pieces "
                                    "occurs twice any more in this text)"), "%s", out);
    free(out);
    cr_assert_eq(quill(&out, "train --config configs/tiny.json --tokenizer bpe --vocab-size 300 "
                             "--data %s --out %s/reached --steps 0", corpus, dir), 0, "%s", out);
    cr_expect_not_null(strstr(out, "tokenizer: bpe, 300 tokens, learned in"), "%s", out);
    free(out);
}

/* Counts of one read "1 thread", "1 layer", "1 step", not "1 threads", in what train,
 * bench, info and quantize print. */
Test(cli, counts_of_one_are_singular, .timeout = 120)
{
    const char *dir = test_make_tmpdir();
    const char *corpus = test_write_corpus(dir);
    char run[256], quantized[512], *out;
    snprintf(run, sizeof run, "%s/run", dir);
    snprintf(quantized, sizeof quantized, "%s/q8.gguf", dir);
    cr_assert_eq(quill(&out, "train --config configs/tiny.json --layers 1 --heads 1 --kv-heads 1 "
                             "--threads 1 --data %s --out %s --steps 1", corpus, run),
                 0, "%s", out);
    cr_expect(strstr(out, "model: 1 layer, dim 64, 1 head (1 kv)") && strstr(out, ", 1 thread,") &&
                  strstr(out, "after 1 step\n"), "%s", out);
    free(out);
    cr_assert_eq(quill(&out, "info %s --context 1", run), 0, "%s", out);
    cr_expect(strstr(out, "model: llama, 1 layer, dim 64, 1 head (1 kv,") &&
                  strstr(out, "for 1 position of f32: keys and values of 1 layer x"), "%s", out);
    free(out);
    cr_assert_eq(quill(&out, "bench %s -p 2 -n 1 -r 1 -t 1", run), 0, "%s", out);
    cr_expect_not_null(strstr(out, ", 1 thread,"), "%s", out);
    free(out);
    cr_assert_eq(quill(&out, "bench configs/tiny.json --threads 1 --steps 1 --warmup 1 --data %s",
                       corpus), 0, "%s", out);
    cr_expect(strstr(out, "machine: 1 thread,") &&
                  strstr(out, "median of 1 step after 1 warm-up step, 1 thread x 1 rank,"),
              "%s", out);
    free(out);
    /* a file of one tensor */
    char single[512];
    snprintf(single, sizeof single, "%s/single.gguf", dir);
    static float weights[64 * 4];
    const uint64_t ne[2] = {64, 4};
    GgufWriter *w = gguf_writer_new();
    gguf_writer_add_tensor(w, "blk.0.ffn_up.weight", GGML_TYPE_F32, 2, ne, weights);
    Error err;
    cr_assert_eq(gguf_writer_write(w, single, &err), 0, "%s", err.msg);
    gguf_writer_free(w);
    cr_assert_eq(quill(&out, "quantize %s %s Q8_0", single, quantized), 0, "%s", out);
    cr_expect_not_null(strstr(out, ": 1 tensor, "), "%s", out);
    free(out);
}

/* bench and info count a model's weights the same way: every tensor's bytes in the file. */
Test(cli, bench_and_info_count_the_same_weight_bytes, .timeout = 60)
{
    const char *dir = test_make_tmpdir();
    const char *corpus = test_write_corpus(dir);
    char run[256], *info, *bench;
    snprintf(run, sizeof run, "%s/run", dir);
    quill_ok("train --config configs/tiny.json --data %s --out %s --steps 0", corpus, run);
    cr_assert_eq(quill(&info, "info %s", run), 0, "%s", info);
    cr_assert_eq(quill(&bench, "bench %s -p 2 -n 1 -r 1", run), 0, "%s", bench);
    double info_mb = 0, bench_mb = 0;
    const char *a = strstr(info, " bytes ("), *b = strstr(bench, "M parameters, ");
    cr_assert(a && b, "%s\n%s", info, bench);
    cr_assert_eq(sscanf(a, " bytes (%lf MB)", &info_mb), 1, "%s", info);
    cr_assert_eq(sscanf(b, "M parameters, %lf MB of weights", &bench_mb), 1, "%s", bench);
    cr_expect_gt(info_mb, 0.0);
    cr_expect_eq(info_mb, bench_mb, "info %.2f MB, bench %.2f MB", info_mb, bench_mb);
    free(info);
    free(bench);
}

/* A run records its data by absolute path, so that --resume works from any directory. */
Test(cli, resume_works_from_another_directory, .timeout = 60)
{
    const char *dir = test_make_tmpdir();
    test_write_corpus(dir);
    char cwd[2048], bin[4096], command[8192], config[512], *out, *json;
    cr_assert_not_null(getcwd(cwd, sizeof cwd));
    const char *quill_bin = test_quill_bin();
    snprintf(bin, sizeof bin, quill_bin[0] == '/' ? "%.0s%s" : "%s/%s", cwd, quill_bin);
    snprintf(command, sizeof command, "cd %s && %s train --config %s/configs/tiny.json "
                                      "--data corpus.txt --out run --steps 2", dir, bin, cwd);
    cr_assert_eq(test_run_capture(command, &out), 0, "%s", out);
    free(out);
    snprintf(config, sizeof config, "%s/run/config.json", dir);
    test_file_bytes(config, &json);
    char expected[600];
    snprintf(expected, sizeof expected, "\"data\":\t[\"%s/corpus.txt\"]", dir);
    cr_expect_not_null(strstr(json, expected), "no %s in:\n%s", expected, json);
    free(json);
    snprintf(command, sizeof command, "cd / && %s train --resume %s/run --steps 3", bin, dir);
    cr_assert_eq(test_run_capture(command, &out), 0, "%s", out);
    free(out);
}

/* ---- MPI ---------------------------------------------------------------------------------- */

/* The mpirun command line for n ranks, or a skip (a failure in CI) when there is none. */
static void mpirun_prefix(char *out, size_t cap, int ranks)
{
    if (system("command -v mpirun > /dev/null 2>&1") != 0) {
        if (test_in_ci())
            cr_assert_fail("mpirun is missing (make deps installs openmpi-bin)");
        cr_skip_test("mpirun is missing: MPI tests skipped (make deps installs openmpi-bin)");
    }
    /* root in a container: Open MPI wants both variables; more ranks than cores is fine.
     * Open MPI's plugins leave allocations behind at exit, which LeakSanitizer would report
     * in `make check` (quill's own code runs the same paths, leak-checked, without MPI). */
    snprintf(out, cap, "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 "
                       "ASAN_OPTIONS=detect_leaks=0 mpirun --oversubscribe -np %d", ranks);
}

/* Runs `mpirun -np 2 quill ARGS`, expecting success. */
static void quill_mpi_ok(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void quill_mpi_ok(const char *fmt, ...)
{
    char prefix[256], args[2048], command[2600], *out;
    mpirun_prefix(prefix, sizeof prefix, 2);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(command, sizeof command, "%s %s %s", prefix, test_quill_bin(), args);
    int status = test_run_capture(command, &out);
    cr_assert_eq(status, 0, "%s failed (%d):\n%s", command, status, out);
    free(out);
}

#define MPI_TINY "--config configs/tiny.json --threads 1 --grad-accum 2 --eval-every 0"

/* Two ranks, each half of every step's micro-batches, give the single process's model byte
 * for byte: the gradients are added in the same tree. So does ZeRO-1 (the AdamW moments
 * sharded over the ranks), and so does a two-rank run stopped and resumed. */
Test(mpi, two_ranks_zero_and_resume_give_the_single_process_model, .timeout = 240)
{
    char prefix[256];
    mpirun_prefix(prefix, sizeof prefix, 2);
    const char *dir = test_make_tmpdir();
    const char *corpus = test_write_corpus(dir);
    char one[256], two[256], zero[256], resumed[256], a[512], b[512];
    snprintf(one, sizeof one, "%s/one", dir);
    snprintf(two, sizeof two, "%s/two", dir);
    snprintf(zero, sizeof zero, "%s/zero", dir);
    snprintf(resumed, sizeof resumed, "%s/resumed", dir);
    quill_ok("train " MPI_TINY " --data %s --out %s --steps 6", corpus, one);
    quill_mpi_ok("train " MPI_TINY " --data %s --out %s --steps 6", corpus, two);
    quill_mpi_ok("train " MPI_TINY " --data %s --out %s --steps 6 --zero 1", corpus, zero);
    quill_mpi_ok("train " MPI_TINY " --data %s --out %s --steps 3 --decay-steps 6 --zero 1",
                 corpus, resumed);
    quill_mpi_ok("train --resume %s --steps 6", resumed);
    snprintf(a, sizeof a, "%s/model.gguf", one);
    const char *runs[] = {two, zero, resumed};
    for (int i = 0; i < 3; i++) {
        snprintf(b, sizeof b, "%s/model.gguf", runs[i]);
        test_expect_same_file(a, b);
    }
}

/* Under mpirun, a rank's stdout is a pseudo-terminal that Open MPI relays to mpirun's own
 * output, here a pipe: the progress comes as plain lines, with no carriage return and no
 * escape sequence. */
Test(mpi, piped_progress_is_plain_lines, .timeout = 120)
{
    char prefix[256], command[2600], *out;
    mpirun_prefix(prefix, sizeof prefix, 2);
    const char *dir = test_make_tmpdir();
    const char *corpus = test_write_corpus(dir);
    snprintf(command, sizeof command, "%s %s train " MPI_TINY " --data %s --out %s/run "
                                      "--steps 3 --log-every 1", prefix, test_quill_bin(),
             corpus, dir);
    cr_assert_eq(test_run_capture(command, &out), 0, "%s", out);
    cr_expect_null(strchr(out, '\r'), "a carriage return in:\n%s", out);
    cr_expect_null(strchr(out, '\033'), "an escape sequence in:\n%s", out);
    cr_expect(strstr(out, "\nstep 1/3: loss ") && strstr(out, "\nstep 3/3: loss "), "%s", out);
    free(out);
}

/* A run that fails under mpirun stops every rank, says so once, and leaves the last
 * checkpoint as it was. */
Test(mpi, a_failing_job_reports_once_and_keeps_the_checkpoint, .timeout = 120)
{
    char prefix[256];
    mpirun_prefix(prefix, sizeof prefix, 2);
    const char *dir = test_make_tmpdir();
    const char *corpus = test_write_corpus(dir);
    char run[256], model[512], command[2600], *before, *after, *out;
    snprintf(run, sizeof run, "%s/run", dir);
    quill_mpi_ok("train " MPI_TINY " --data %s --out %s --steps 2 --optimizer sgd", corpus, run);
    snprintf(model, sizeof model, "%s/model.gguf", run);
    size_t n_before = test_file_bytes(model, &before);
    snprintf(command, sizeof command, "%s %s train --resume %s --steps 200 --lr 10 --min-lr 10 "
                                      "--grad-clip 0", prefix, test_quill_bin(), run);
    int status = test_run_capture(command, &out);
    cr_expect_neq(status, 0, "%s", out);
    int reports = 0;
    for (const char *p = out; (p = strstr(p, "quill: error:")); p++)
        reports++;
    cr_expect_eq(reports, 1, "%d error reports (exit status %d):\n%s", reports, status, out);
    cr_expect_not_null(strstr(out, "diverged"), "%s", out);
    size_t n_after = test_file_bytes(model, &after);
    cr_expect(n_before == n_after && memcmp(before, after, n_before) == 0,
              "the checkpoint changed");
    free(before);
    free(after);
    free(out);
}

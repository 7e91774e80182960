/* Helpers shared by the Criterion tests. */
#ifndef QUILL_TEST_UTIL_H
#define QUILL_TEST_UTIL_H

#include <criterion/criterion.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>

#include "gguf.h"
#include "quill.h"
#include "sampler.h"

/* The sampler's defaults with every processor off and temperature 1: the model's own
 * distribution. Sampler tests turn on what they check. */
SamplerParams test_sampler_params_off(void);

/* Path of a file under ../shared (or $QUILL_SHARED), in one of 8 static buffers used in
 * turn, or NULL when the file is missing. */
const char *test_shared_path(const char *relative);

/* True in CI (CI=true), where tests that need ../shared must fail instead of skipping. */
bool test_in_ci(void);

/* Sets `var` to the path of a file under ../shared; when it is missing, fails the test in
 * CI and skips it elsewhere, with a message naming the file. */
#define SHARED_FILE_OR_SKIP(var, relative)                                                        \
    const char *var = test_shared_path(relative);                                              \
    do {                                                                                        \
        if (!var) {                                                                             \
            if (test_in_ci())                                                                   \
                cr_assert_fail("../shared/%s is missing (CI needs ../shared beside the checkout)",   \
                         relative);                                                             \
            cr_skip_test("../shared/%s is missing: test skipped", relative);                   \
        }                                                                                       \
    } while (0)

/* A model loaded through quill.h on one thread (tests run side by side); the test fails
 * when it does not load. */
quill_model *test_model_load(const char *path);
/* A context of n_seq sequences of n_ctx positions with an F32 cache (llama.cpp's reference
 * runs use one); the test fails when it cannot be made. */
quill_context *test_context_new(quill_model *m, int n_seq, int n_ctx);

/* Writes text to dir/name (a fresh file) and returns its path (static buffer). */
const char *test_write_file(const char *dir, const char *name, const char *text);

/* Writes dir/corpus.txt, about 40 KB of sentences drawn from 16 words by a fixed-seed
 * generator, and returns its path (static buffer). */
const char *test_write_corpus(const char *dir);

/* A fresh empty directory under /tmp, in a static buffer. */
const char *test_make_tmpdir(void);

/* Path of the quill binary under test ($QUILL_BIN, set by `make test`, or bin/quill). */
const char *test_quill_bin(void);

/* Runs a shell command, captures its stdout+stderr (malloc'd, NUL-terminated) and returns
 * its exit status (the code, or 128+signal when killed). */
int test_run_capture(const char *command, char **output);

/* Runs `quill ARGS`, the binary under test, with ARGS formatted from fmt; returns the exit
 * status and the output (stdout and stderr, malloc'd). */
int quill(char **output, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Runs `quill ARGS > file`: returns stdout's bytes (malloc'd, NUL-terminated) in *out and
 * their count; the exit status goes to *status, and stderr to *messages (malloc'd). */
size_t quill_stdout(char **out, char **messages, int *status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* A quill process a test talks to: through pipes, or on a pseudo-terminal, as a user's
 * terminal runs it (isatty() is true for its stdin, stdout and stderr, libedit edits its
 * lines, and "\x03" typed is the terminal's interrupt key, Ctrl+C). */
typedef struct {
    pid_t pid;
    int in, out;        /* its input and its output (one descriptor on a terminal) */
    char seen[1 << 16]; /* what it has written so far (the newest half, past the size) */
    size_t n_seen;
} TestProcess;

/* Starts `quill ARGS`: with terminal, on a new pseudo-terminal of 80 x 24 that becomes its
 * controlling terminal; otherwise with pipes (stdout and stderr on the same one). */
void test_process_start(TestProcess *p, bool terminal, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Writes text to its input (keys, on a terminal). */
void test_process_type(TestProcess *p, const char *text);
/* Reads its output until it holds `text` after byte `from` of seen; false when the output
 * ends first. */
bool test_process_wait_for(TestProcess *p, size_t from, const char *text);
/* On a terminal: waits until a line editor reads keys one by one (the terminal has left
 * canonical mode), so that the keys typed next reach it and not the terminal's own line
 * discipline (which would echo them, and turn Ctrl+C into a signal). */
void test_process_wait_for_line_editing(TestProcess *p);
/* Reads the rest of its output (after closing its input, on pipes) and waits for it:
 * returns its exit status, or 128 + the signal that killed it. */
int test_process_finish(TestProcess *p);

/* Expects `quill ARGS` to succeed. */
void quill_ok(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Expects `quill ARGS` to exit with status 1 and to end with exactly one line starting
 * "quill: error:" that contains needle. */
void expect_clean_error(const char *needle, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Writes a copy of the GGUF file src to dst: the same tensors and metadata, except that the
 * keys starting with drop_prefix are left out, and add_keys(w) (when not NULL) adds its own.
 * How a test makes a variant of a shared model (another RoPE scaling, say). */
void test_gguf_copy(const char *src, const char *dst, const char *drop_prefix,
                    void (*add_keys)(GgufWriter *w));

/* Path of a llama.cpp tool ($LLAMA_CPP_BIN/TOOL, else ../peers/llama.cpp/build/bin/TOOL),
 * in a static buffer, or NULL when it is not there. */
const char *test_llama_cpp_tool(const char *tool);

/* Sets `var` (a char array) to the path of llama.cpp's TOOL, or skips the test with a
 * message naming where it looked: llama.cpp is built beside the project, never part of it,
 * so tests that run it skip where it is absent (in CI too). */
#define LLAMA_CPP_TOOL_OR_SKIP(var, tool)                                                          \
    char var[4096];                                                                             \
    do {                                                                                        \
        const char *found_ = test_llama_cpp_tool(tool);                                         \
        if (!found_)                                                                            \
            cr_skip_test("llama.cpp's %s is not in $LLAMA_CPP_BIN or "                          \
                         "../peers/llama.cpp/build/bin: nothing to compare with", tool);        \
        snprintf(var, sizeof var, "%s", found_);                                                \
    } while (0)

/* Greedy decoding of the prompt by llama.cpp's llama-cli (temperature 0, F32 KV cache, 2
 * threads) and by quill (F32 KV cache), compared token by token: up to n tokens, or until
 * quill reaches a step whose two best logits are within `margin` of each other (a near
 * tie, where the two may legitimately part when their logits differ by up to margin / 2).
 * Fails the test at the first token that differs; returns how many were compared, with
 * quill's tokens in ours (n ints). */
int test_greedy_equals_llama_cpp(const char *llama_cli, const char *model, const char *prompt,
                                 int n, float margin, int *ours);

/* The same with a LoRA adapter at a scale: llama-cli's --lora-scaled ADAPTER SCALE, and
 * quill's infer_set_lora. adapter NULL: none. */
int test_greedy_lora_equals_llama_cpp(const char *llama_cli, const char *model,
                                      const char *adapter, float scale, const char *prompt,
                                      int n, float margin, int *ours);

/* quill's greedy continuation of the prompt (F32 KV cache), token by token: up to n tokens
 * into out, stopping after the end-of-text token, or before a step whose two best logits
 * are within `margin` of each other. Returns the count. */
int test_quill_greedy(const char *model_path, const int *prompt, int n_prompt, int n,
                      float margin, int *out);
/* The same with the adapter adapter_path applied at `scale` (NULL: none). */
int test_quill_greedy_lora(const char *model_path, const char *adapter_path, float scale,
                           const int *prompt, int n_prompt, int n, float margin, int *out);

/* JSON Schema validation by an independent validator, Debian's python3-jsonschema (make
 * deps installs it). test_json_validator_or_skip: when it cannot be imported, a failure in
 * CI and a skip elsewhere. test_json_validate_pairs: reads pairs [schema, text] from path,
 * one per entry of a JSON array, and returns the validator's output, one line per pair:
 * "valid", or "invalid: why". */
void test_json_validator_or_skip(void);
char *test_json_validate_pairs(const char *path);

/* The bytes of a file (malloc'd, NUL-terminated) in *data; returns their count. The test
 * fails when it cannot be read. */
size_t test_file_bytes(const char *path, char **data);
/* Expects two files to hold the same bytes. */
void test_expect_same_file(const char *a, const char *b);

/* `quill train FLAGS` on test_write_corpus's text for `steps` steps at once, and for steps/2
 * then a --resume to `steps` with the same schedule (decay over `steps`): model.gguf,
 * train_state and the losses logged must be identical. */
void test_resume_is_exact(const char *flags, int steps);

#endif

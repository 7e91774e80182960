/* Training configuration: JSON files in configs/, overridden by flags of `quill train`.
 *
 * Every key is also a flag, spelled with dashes: key batch_size is --batch-size, and a
 * boolean key x is set by --x and cleared by --no-x. Keys and flags come from the one
 * table below, so they cannot drift apart. The file is flat JSON:
 *     { "layers": 4, "dim": 128, "tokenizer": "char", "lr": 1e-3, ... }
 * An unknown key or a bad value is an error that names the key. A value of 0 for
 * kv_heads, ffn_dim, seq_len, vocab_size and decay_steps means "derive it" (the help
 * text says from what); config_resolve fills them in, and the resolved config is what
 * DIR/config.json and the checkpoint record. This is the only file that includes cJSON: the
 * other JSON quill reads (log.jsonl, for quill plot) goes through config_read_json_numbers. */
#ifndef QUILL_TRAIN_CONFIG_H
#define QUILL_TRAIN_CONFIG_H

#include <stdbool.h>
#include <stdio.h>

#include "cli.h"
#include "error.h"
#include "model.h"

/* The keys fixed once a run has started: the model, its tokenizer and the optimizer whose
 * moments the checkpoint holds. */
#define CONFIG_FIXED_KEYS(X)                                                                \
    /* type    name            default   min    max      help */                              \
    X(Int,    layers,         "4",      1,     1024,    "transformer blocks (L)")             \
    X(Int,    dim,            "128",    2,     65536,   "width of the residual stream (C)")   \
    X(Int,    heads,          "4",      1,     1024,    "attention heads (H)")                \
    X(Int,    kv_heads,       "0",      0,     1024,    "key/value heads (0: = heads)")       \
    X(Int,    ffn_dim,        "0",      0,     262144,  "SwiGLU hidden width (0: 8/3 dim, rounded up to 32)") \
    X(Int,    context,        "256",    2,     65536,   "longest sequence the model handles") \
    X(Bool,   tie_embeddings, "false",  0,     1,       "output projection reuses token_embd") \
    X(Float,  rope_base,      "10000",  1,     1e9,     "RoPE frequency base")                \
    X(Float,  norm_eps,       "1e-5",   1e-12, 1,       "RMSNorm epsilon")                    \
    X(Choice, tokenizer,      "char",   0,     0,       "tokenizer: char | bpe (trained on the data) | base (--init: the base model's own)") \
    X(Int,    vocab_size,     "0",      0,     1048576, "bpe: vocabulary size (0: 512); char: the corpus decides") \
    X(Choice, optimizer,      "adamw",  0,     0,       "adamw | sgd")

/* The keys of the run itself: they may change when resuming. */
#define CONFIG_RUN_KEYS(X)                                                                  \
    X(Paths,  data,           "",       0,     0,       "plain-text training files")          \
    X(Bool,   shuffle,        "true",   0,     1,       "random windows (--no-shuffle: consecutive windows)") \
    X(Int,    steps,          "1000",   0,     1e9,     "total optimizer steps")              \
    X(Int,    batch_size,     "8",      1,     65536,   "sequences per micro-batch (B)")      \
    X(Int,    seq_len,        "0",      0,     65536,   "tokens per sequence (T; 0: context)") \
    X(Int,    grad_accum,     "1",      1,     65536,   "micro-batches per step")             \
    X(Float,  lr,             "1e-3",   0,     10,      "peak learning rate")                 \
    X(Float,  min_lr,         "1e-4",   0,     10,      "learning rate at the end of the cosine decay") \
    X(Int,    warmup,         "100",    0,     1e9,     "steps of linear warmup")             \
    X(Int,    decay_steps,    "0",      0,     1e9,     "step at which the cosine reaches min_lr (0: steps)") \
    X(Float,  weight_decay,   "0.1",    0,     10,      "decoupled weight decay (none on norm weights)") \
    X(Float,  beta1,          "0.9",    0,     0.9999,  "AdamW first-moment decay")           \
    X(Float,  beta2,          "0.95",   0,     0.99999, "AdamW second-moment decay")          \
    X(Float,  grad_clip,      "1.0",    0,     1e9,     "clip the global gradient norm (0: off)") \
    X(Int,    seed,           "1337",   0,     2147483647, "seeds initialisation and batch sampling") \
    X(Int,    eval_every,     "100",    0,     1e9,     "steps between validation evals (0: never)") \
    X(Int,    eval_batches,   "20",     1,     1e9,     "batches per validation eval")        \
    X(Int,    save_every,     "0",      0,     1e9,     "steps between checkpoints (0: only the final one)") \
    X(Int,    log_every,      "10",     1,     1e9,     "steps between progress lines when not on a terminal") \
    X(Int,    threads,        "0",      0,     1024,    "compute threads (0: all cores)")    \
    X(Int,    zero,           "0",      0,     1,       "ZeRO stage under mpirun: 1 shards the AdamW moments across the ranks")

#define CONFIG_KEYS(X) CONFIG_FIXED_KEYS(X) CONFIG_RUN_KEYS(X)

typedef int ConfigInt;
typedef float ConfigFloat;
typedef bool ConfigBool;
typedef const char *ConfigChoice; /* points to one of the key's allowed values (static) */
typedef StringList ConfigPaths;

typedef struct {
#define X(type, name, def, min, max, help) Config##type name;
    CONFIG_KEYS(X)
#undef X
} TrainConfig;

/* Every key at its default. */
void config_init(TrainConfig *c);
void config_free(TrainConfig *c); /* NULL-safe */
int config_copy(TrainConfig *dst, const TrainConfig *src, Error *err);

/* Applies the keys of a JSON text of len bytes; `origin` names it in messages. The whole
 * text must be one JSON object: nothing after it, no NUL byte in it, and no key twice. */
int config_apply_json(TrainConfig *c, const char *json, size_t len, const char *origin,
                      Error *err);
int config_apply_file(TrainConfig *c, const char *path, Error *err);

/* Reads the numbers of one flat JSON object (a line of log.jsonl, for quill plot): for each
 * of the n names, present[i] says whether the object has it and values[i] holds its value
 * (0 when absent). Other keys are ignored; a named key whose value is not a number is an
 * error. As for configs, the text must be exactly one JSON object; `origin` names it in
 * messages. It lives here because this file is the one that includes cJSON. */
int config_read_json_numbers(const char *json, size_t len, const char *origin,
                             const char *const *names, int n, double *values, bool *present,
                             Error *err);

/* Sets one key from its text form, as a flag would ("batch_size", "16"). */
int config_set_key(TrainConfig *c, const char *name, const char *text, Error *err);

/* The command-line flags of every key, with c's fields as their destinations, for
 * cli_parse_command (key batch_size is --batch-size). Returns the number of flags (at most
 * CONFIG_N_KEYS). */
enum { CONFIG_N_KEYS = 40 };
int config_flags(TrainConfig *c, Flag *flags);
/* The flag of a key without its leading dashes: kv_heads is kv-heads. Returns flag_name. */
const char *config_flag_spelling(char flag_name[32], const char *key);

/* Fills in the derived values (see the top of this file) and checks the keys against each
 * other (kv_heads divides heads, seq_len <= context, ...). */
int config_resolve(TrainConfig *c, Error *err);

/* Makes each data path absolute (relative ones are taken from the working directory), so
 * that the run's config.json and train_state name files that --resume finds from any
 * directory. */
int config_absolute_data_paths(TrainConfig *c, Error *err);

/* Fails, naming the key, when a fixed key differs between the two. */
int config_check_fixed_keys(const TrainConfig *saved, const TrainConfig *requested,
                            Error *err);

/* The model blueprint the config describes (after config_resolve). */
ModelConfig config_model(const TrainConfig *c);

/* All keys as pretty-printed JSON (malloc'd), or NULL when out of memory. */
char *config_to_json(const TrainConfig *c);
/* The same, written atomically as DIR/config.json: a run's resolved config. */
int config_write_run_file(const TrainConfig *c, const char *dir, Error *err);

#endif

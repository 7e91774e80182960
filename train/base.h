/* The base model of `quill train --init BASE.gguf`: full fine-tuning of a downloaded
 * llama-family model. The run takes everything that defines the model from the file:
 *
 *   architecture  layers, dim, heads, kv heads, ffn width, vocabulary, RoPE base and
 *                 scaling, norm epsilon, tied or untied output: the config keys of the
 *                 model are set to the base's before the config file and the flags are
 *                 applied, and a key they then set to another value is an error;
 *   context       the base's, or a smaller one (--context crops it, as nanoGPT's
 *                 init_from crops block_size; RoPE has no weights tied to positions);
 *   tokenizer     the base's own (config key tokenizer = "base"), so that the data is
 *                 tokenized as the base was trained and the written model keeps it;
 *   weights       every tensor, widened to F32 into the trainable buffer (F16 and BF16
 *                 are exact in F32). A quantized file is refused: its weights would have
 *                 to be trained in F32 and written back at full size, which is not what
 *                 its owner wants; LoRA (quill finetune) trains adapters over it instead.
 *
 * What the trainer cannot represent is refused by the loader with the name of the thing
 * (model_gguf.c): another architecture, a tensor llama does not have (biases, experts),
 * partial RoPE, a RoPE scaling other than linear. */
#ifndef QUILL_TRAIN_BASE_H
#define QUILL_TRAIN_BASE_H

#include "config.h"
#include "error.h"
#include "gguf.h"
#include "model.h"

/* Opens the base model and reads its blueprint into *mc: a llama GGUF whose tensors are
 * all F32, F16 or BF16, whose training state (16 bytes a parameter: weights, gradients
 * and AdamW's two moments) fits in this machine's memory. Messages start with the path. */
int base_open(const char *path, GgufFile **f, ModelConfig *mc, Error *err);

/* Sets the model's config keys to the base's (before the config file and flags). */
void base_config_apply(TrainConfig *c, const ModelConfig *mc);

/* After the config file and the flags (and config_resolve): fails, naming the key and both
 * values, when one of the model's keys now differs from the base's, or the context is
 * longer than the base's. */
int base_config_check(const TrainConfig *c, const ModelConfig *mc, const char *path,
                      Error *err);

#endif

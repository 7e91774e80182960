/* Chat data for quill finetune: conversations in JSON Lines, one token stream and a mask
 * that says which tokens the loss is taken on.
 *
 * Each line of a .jsonl file is one conversation (blank lines are skipped):
 *
 *     {"messages": [{"role": "system" | "user" | "assistant", "content": "..."}, ...]}
 *
 * It is formatted with the base model's chat template (src/chat.h) and tokenized the way
 * quill chat reads a conversation: for each assistant reply, the text before it, up to and
 * including the template's generation prompt ("<|im_start|>assistant\n"), is one piece,
 * and the reply with the end of its turn ("Hello!<|im_end|>\n") is the next, so the tokens
 * are those the model reads as a prompt and then writes as an answer. The reply's tokens
 * are "counted": the loss is taken where they are the target, nowhere else (or on every
 * token with loss_on_all, as for plain text). The conversations are concatenated, in the
 * file's order, into one stream. */
#ifndef QUILL_TRAIN_CHAT_DATA_H
#define QUILL_TRAIN_CHAT_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chat.h"
#include "error.h"
#include "tokenizer.h"

typedef struct {
    int *ids;         /* (n) */
    uint8_t *counted; /* (n) 1: a token of an assistant's reply (or any, with loss_on_all) */
    size_t n, cap;
} ChatTokens;

/* True when path names chat data: its name ends in ".jsonl". */
bool chat_data_path(const char *path);

/* Appends the tokens of one conversation msgs[0..n) to out. An error names a conversation
 * the template cannot express. */
int chat_tokens_append(ChatTokens *out, ChatFamily family, const Tokenizer *tok,
                       const ChatMessage *msgs, int n, bool loss_on_all, Error *err);

/* Appends every conversation of the JSONL file at path. A line that is not a conversation
 * is an error naming the file, the line's number (from 1) and what is wrong with it. */
int chat_tokens_load(ChatTokens *out, const char *path, ChatFamily family, const Tokenizer *tok,
                     bool loss_on_all, Error *err);

void chat_tokens_free(ChatTokens *t); /* NULL-safe */

#endif

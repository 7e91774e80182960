/* Chat templates: the exact text a chat model was trained to read around each message.
 *
 * A GGUF chat model stores its template as Jinja source (tokenizer.chat_template). quill
 * does not run Jinja: it recognises the family of a template by markers in its text and
 * writes that family's format in C, so that the text is what the family's reference
 * template renders (Hugging Face settings: trim_blocks, lstrip_blocks). The families:
 *
 *   chatml   <|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n      Qwen, many others
 *   llama2   <s>[INST] <<SYS>>\n...\n<</SYS>>\n\nHi [/INST]                Llama 2 chat
 *   llama3   <|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>...
 *   zephyr   <|user|>\nHi</s>\n<|assistant|>\n
 *   mistral  <s> [INST] Hi [/INST]                                          Mistral "v1"
 *   gemma    <bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n
 *   phi3     <|user|>\nHi<|end|>\n<|assistant|>\n
 *
 * Llama 2, Mistral and Gemma have no system turn: the system text goes in front of the first
 * user message (Llama 2 inside <<SYS>> markers, Mistral and Gemma followed by a blank
 * line), and the other roles must alternate user, assistant, user, ... The special-token
 * text in the result ("<|im_start|>", "<s>") must be encoded with parse_special, so that it
 * becomes the control tokens. docs/formats.md has the details and what quill leaves out. */
#ifndef QUILL_CHAT_H
#define QUILL_CHAT_H

#include <stdbool.h>

#include "error.h"
#include "gguf.h"

typedef enum {
    CHAT_UNKNOWN = 0, /* no family recognised: the caller falls back to plain completion */
    CHAT_CHATML,
    CHAT_LLAMA2,
    CHAT_LLAMA3,
    CHAT_ZEPHYR,
    CHAT_MISTRAL,
    CHAT_GEMMA,
    CHAT_PHI3,
} ChatFamily;

typedef enum {
    CHAT_ROLE_SYSTEM,
    CHAT_ROLE_USER,
    CHAT_ROLE_ASSISTANT,
} ChatRole;

typedef struct {
    ChatRole role;
    const char *content; /* UTF-8, NUL-terminated */
} ChatMessage;

/* The family of a Jinja template, from the markers its text contains, or CHAT_UNKNOWN. */
ChatFamily chat_family_detect(const char *template_text);
/* The family of a model file: detected from its tokenizer.chat_template, or CHAT_UNKNOWN
 * when it has none. */
ChatFamily chat_family_from_gguf(const GgufFile *f);
/* "chatml", "llama2", ... (an override such as --chat-template gemma), or CHAT_UNKNOWN. */
ChatFamily chat_family_from_name(const char *name);
/* The name of a family ("unknown" for CHAT_UNKNOWN), and all names, comma-separated. */
const char *chat_family_name(ChatFamily family);
const char *chat_family_names(void);

/* True when the family's text starts with the bos token's text ("<s>", "<bos>",
 * "<|begin_of_text|>"): the caller must then not add a bos of its own, or the prompt
 * starts with two. */
bool chat_template_writes_bos(ChatFamily family);

/* The conversation msgs[0..n) in the family's format, into a malloc'd NUL-terminated
 * string. add_generation_prompt opens the assistant's turn at the end, so that the model
 * writes the reply next. An error names a conversation the family cannot express (a
 * system message after the first, roles that do not alternate where they must). */
int chat_format(ChatFamily family, const ChatMessage *msgs, int n, bool add_generation_prompt,
                char **out, Error *err);

/* Only the new part of a conversation, for a caller that keeps the model's state between
 * turns. msgs[n_past - 1] is the assistant's reply that just ended; the result is the text
 * that follows the reply: the end of the assistant's turn, then msgs[n_past..n), then the
 * generation prompt. So, with R the reply as the model wrote it (for llama2 and mistral
 * " " + content: their template puts a space after [/INST], which the model writes as part
 * of its first token; for the others the content itself):
 *   chat_format(msgs, n_past - 1, true) + R + continuation == chat_format(msgs, n, add_gen)
 */
int chat_format_continuation(ChatFamily family, const ChatMessage *msgs, int n, int n_past,
                             bool add_generation_prompt, char **out, Error *err);

#endif

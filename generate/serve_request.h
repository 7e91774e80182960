/* quill serve: a /v1/completions or /v1/chat/completions request, read from its JSON and
 * checked field by field (a 400 naming the field), its prompts tokenized. serve_completion.c
 * turns it into the engine's jobs and writes the answers. */
#ifndef QUILL_GENERATE_SERVE_REQUEST_H
#define QUILL_GENERATE_SERVE_REQUEST_H

#include "serve.h"

enum {
    MAX_PROMPTS = 16,
    MAX_CHOICES = 16, /* n at most (llama-server has no limit; OpenAI's is 128) */
    MAX_STOP = 4,     /* stop strings, as OpenAI */
    MAX_CHAIN = 16,   /* stages in "samplers" */
    MAX_BAD_WORDS = 64,
    MAX_MUST_INCLUDE = 64, /* quill_beam_params' limit */
    MAX_DRY_BREAKERS = 16, /* dry_sequence_breakers */
    MAX_MESSAGES = 256,
    DEFAULT_MAX_TOKENS = 16, /* OpenAI's default for completions */
};

typedef struct {
    cJSON *json; /* the request; the strings below point into it */
    bool chat;
    const char *prompts[MAX_PROMPTS];
    int n_prompts;
    quill_token *ids[MAX_PROMPTS]; /* each prompt's tokens (malloc'd) */
    int n_ids[MAX_PROMPTS];
    int n_prompt_tokens;           /* their sum: the usage's prompt_tokens */
    char *chat_prompt; /* chat: the messages in the model's template (malloc'd) */
    char *json_schema; /* "json_schema" or "response_format"'s schema as text (malloc'd) */
    const char *json_field; /* which of the two gave it, for an error */
    int max_tokens;
    int n;
    bool stream;
    bool echo;
    int trace;
    bool include_usage; /* stream_options.include_usage: a last chunk with the usage */
    int logprobs;       /* top log-probabilities per token; -1: none */
    int beam_size;      /* > 1: beam search (serve_beam.c) */
    float length_penalty;
    const char *must_include[MAX_MUST_INCLUDE]; /* words each beam's text must hold */
    int n_must_include;
    bool ignore_eos;    /* llama-server's: go on past the end-of-text token */
    bool cache_prompt;  /* llama-server's: reuse a slot's cached start of the prompt */
    const char *guide;           /* classifier-free guidance (serve_guided.c): the two */
    const char *negative_prompt; /* sides' texts before the prompt (NULL: none) */
    float guidance_scale;
    const char *stop[MAX_STOP];
    int n_stop;
    quill_sampler_params sampler;
    quill_logit_bias *bias;
    const char *bad_words[MAX_BAD_WORDS];
    const char *dry_breakers[MAX_DRY_BREAKERS];
    char chain[256];
} CompletionRequest;

/* The request in body[0..len) (chat: "messages", else "prompt"), or NULL with e filled. */
CompletionRequest *request_read(const char *body, size_t len, bool chat, const Server *s,
                                   ApiError *e);
/* Each prompt's tokens; a prompt that leaves no room to generate is a 400 with both
 * numbers, before anything is queued. */
int request_tokenize(CompletionRequest *c, const Server *s, ApiError *e);
void request_free(CompletionRequest *c); /* NULL-safe */
/* Whether the request asks for classifier-free guidance ("guide" or "negative_prompt"). */
bool request_guided(const CompletionRequest *c);

#endif

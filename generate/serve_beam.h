/* quill serve's beam search: a request with "beam_size" > 1 (serve_beam.c says how it runs
 * beside the engine). */
#ifndef QUILL_GENERATE_SERVE_BEAM_H
#define QUILL_GENERATE_SERVE_BEAM_H

#include "serve_engine.h"

enum { SERVE_MAX_BEAMS = 16 };

typedef struct {
    int beam_size;          /* 2..SERVE_MAX_BEAMS */
    float length_penalty;   /* score = log-probability / length^this (beam.h) */
    int n;                  /* the best beams answered per prompt, <= beam_size */
    int max_tokens;
    bool ignore_eos;
    char *const *stops;
    int n_stops;
    bool parse_special;     /* a chat's prompt: its template's control tokens */
    const char *const *must_include; /* words each beam's text must hold */
    int n_must_include;
    const quill_sampler_params *sampler; /* penalties, bias, bad words: what scores beams */
} BeamRequest;

/* Searches each of the n prompts (texts, with their token counts) in turn; the best beams of prompt i go to the feed as
 * choices i * b->n + j, each one event with its whole text, its end and the words it
 * lacks. On an error the choices not pushed are the caller's to end. */
int serve_beam(Server *s, const BeamRequest *b, const char *const *prompts,
               const int *n_prompts, int n, EngineFeed *feed, Error *err);

#endif

/* quill serve: a request's JSON fields read and checked, and text written into JSON. */
#ifndef QUILL_GENERATE_SERVE_FIELDS_H
#define QUILL_GENERATE_SERVE_FIELDS_H

#include "serve.h"

/* The body as a JSON object, or NULL with a 400 in e. */
cJSON *parse_object(const char *body, size_t len, ApiError *e);

/* Each reads the field `name` of req when it is there and not null: 1 when it set *out, 0
 * when the field is absent, -1 with a 400 in e naming the field when it has the wrong type
 * or (numbers) lies outside [min, max] or (integers) is not a whole number. */
int field_number(const cJSON *req, const char *name, double min, double max, bool integer,
                 double *out, ApiError *e);
int field_float(const cJSON *req, const char *name, double min, double max, float *out,
                ApiError *e);
int field_int(const cJSON *req, const char *name, double min, double max, int *out,
              ApiError *e);
int field_bool(const cJSON *req, const char *name, bool *out, ApiError *e);
/* A string into *out (pointing into req). */
int field_string(const cJSON *req, const char *name, const char **out, ApiError *e);
/* A string or an array of 1..max strings into out[] (pointing into req): their count. */
int field_strings(const cJSON *req, const char *name, int max, const char **out,
                  ApiError *e);

/* Adds text[0..n) as the string `name`, each ill-formed UTF-8 stretch as U+FFFD. */
void add_text(cJSON *obj, const char *name, const char *text, size_t n);
/* Adds v[0..n) as the string `name`: base64 of each float's 4 bytes, little-endian (IEEE
 * float32, as OpenAI's base64 embeddings are and numpy's float32 reads them). */
void add_base64_floats(cJSON *obj, const char *name, const float *v, int n);
/* Adds token t's piece (its bytes, which may be part of a character) the same way. */
void add_piece(cJSON *obj, const char *name, const quill_model *m, quill_token t);

#endif

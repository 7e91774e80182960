/* quill serve: reading a request's JSON fields, each checked, with a 400 that names the
 * field when it is of the wrong type or out of range ("temperature must be >= 0, got -1"),
 * and writing text into JSON (which must be valid UTF-8, where a token's piece need not be). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "serve_fields.h"
#include "utf8.h"

/* ---- reading fields ----------------------------------------------------------------- */

cJSON *parse_object(const char *body, size_t len, ApiError *e)
{
    cJSON *json = cJSON_ParseWithLength(body, len);
    if (!json || !cJSON_IsObject(json)) {
        cJSON_Delete(json);
        serve_error(e, 400, NULL, "the request body is not a JSON object");
        return NULL;
    }
    return json;
}

/* The number `name` of req into *out when it is there (not null) and in [min, max]: returns
 * 1 when set, 0 when absent, -1 (e set, naming the field) when it is of the wrong type, not
 * a whole number where one is wanted, or out of range. */
int field_number(const cJSON *req, const char *name, double min, double max,
                        bool integer, double *out, ApiError *e)
{
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(req, name);
    if (!f || cJSON_IsNull(f))
        return 0;
    if (!cJSON_IsNumber(f))
        return serve_error(e, 400, name, "%s must be %s", name, integer ? "an integer" : "a number");
    double v = f->valuedouble;
    if (integer && v != floor(v))
        return serve_error(e, 400, name, "%s must be an integer, got %g", name, v);
    if (v < min)
        return serve_error(e, 400, name, "%s must be >= %g, got %g", name, min, v);
    if (v > max)
        return serve_error(e, 400, name, "%s must be <= %g, got %g", name, max, v);
    *out = v;
    return 1;
}

int field_float(const cJSON *req, const char *name, double min, double max, float *out,
                       ApiError *e)
{
    double v = 0;
    int got = field_number(req, name, min, max, false, &v, e);
    if (got == 1)
        *out = (float)v;
    return got;
}

int field_int(const cJSON *req, const char *name, double min, double max, int *out,
                     ApiError *e)
{
    double v = 0;
    int got = field_number(req, name, min, max, true, &v, e);
    if (got == 1)
        *out = (int)v;
    return got;
}

int field_bool(const cJSON *req, const char *name, bool *out, ApiError *e)
{
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(req, name);
    if (!f || cJSON_IsNull(f))
        return 0;
    if (!cJSON_IsBool(f))
        return serve_error(e, 400, name, "%s must be true or false", name);
    *out = cJSON_IsTrue(f);
    return 1;
}

/* A string or an array of 1..max strings, into out[] (pointing into req): their count, 0
 * when absent, -1 when of another shape. */
int field_strings(const cJSON *req, const char *name, int max, const char **out,
                         ApiError *e)
{
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(req, name);
    if (!f || cJSON_IsNull(f))
        return 0;
    if (cJSON_IsString(f)) {
        out[0] = f->valuestring;
        return 1;
    }
    int n = cJSON_IsArray(f) ? cJSON_GetArraySize(f) : -1;
    if (n < 1 || n > max)
        return serve_error(e, 400, name, "%s must be a string or an array of 1 to %d strings",
                         name, max);
    int i = 0;
    const cJSON *item;
    cJSON_ArrayForEach(item, f) {
        if (!cJSON_IsString(item))
            return serve_error(e, 400, name, "%s[%d] must be a string", name, i);
        out[i++] = item->valuestring;
    }
    return n;
}

int field_string(const cJSON *req, const char *name, const char **out, ApiError *e)
{
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(req, name);
    if (!f || cJSON_IsNull(f))
        return 0;
    if (!cJSON_IsString(f))
        return serve_error(e, 400, name, "%s must be a string", name);
    *out = f->valuestring;
    return 1;
}

/* Text as a JSON string must be valid UTF-8: a token's piece may be part of a character,
 * so each ill-formed stretch becomes U+FFFD, as a decoder would show it. */
static char *utf8_valid_copy(const char *text, size_t n)
{
    char *out = malloc(n * 3 + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int got = utf8_decode((const unsigned char *)text + i, n - i, &cp);
        if (got > 0) {
            memcpy(out + o, text + i, (size_t)got);
            o += (size_t)got;
            i += (size_t)got;
        } else {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i += (size_t)-got;
        }
    }
    out[o] = '\0';
    return out;
}

void add_text(cJSON *obj, const char *name, const char *text, size_t n)
{
    char *valid = utf8_valid_copy(text, n);
    cJSON_AddStringToObject(obj, name, valid ? valid : "");
    free(valid);
}

/* base64 (RFC 4648, padded with '='): every 3 bytes, 24 bits, become 4 characters of 6 bits
 * each; a last group of 1 or 2 bytes is written as 2 or 3 characters and '=' padding. */
static char *base64_encode(const unsigned char *bytes, size_t n)
{
    static const char digits[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *out = malloc((n + 2) / 3 * 4 + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t group = (uint32_t)bytes[i] << 16;
        if (i + 1 < n)
            group |= (uint32_t)bytes[i + 1] << 8;
        if (i + 2 < n)
            group |= bytes[i + 2];
        out[o++] = digits[group >> 18 & 63];
        out[o++] = digits[group >> 12 & 63];
        out[o++] = i + 1 < n ? digits[group >> 6 & 63] : '=';
        out[o++] = i + 2 < n ? digits[group & 63] : '=';
    }
    out[o] = '\0';
    return out;
}

void add_base64_floats(cJSON *obj, const char *name, const float *v, int n)
{
    unsigned char *bytes = malloc(4 * (size_t)n + 1);
    for (int i = 0; bytes && i < n; i++) {
        uint32_t u;
        memcpy(&u, &v[i], 4);
        for (int k = 0; k < 4; k++)
            bytes[4 * i + k] = (unsigned char)(u >> (8 * k));
    }
    char *text = bytes ? base64_encode(bytes, 4 * (size_t)n) : NULL;
    cJSON_AddStringToObject(obj, name, text ? text : "");
    free(text);
    free(bytes);
}

/* The piece of a token as a JSON string. */
void add_piece(cJSON *obj, const char *name, const quill_model *m, quill_token t)
{
    char piece[256];
    int n = quill_token_to_piece(m, t, piece, sizeof piece);
    add_text(obj, name, piece, n < 0 ? 0 : (size_t)n < sizeof piece ? (size_t)n : sizeof piece - 1);
}


/* quill serve: the real binary started on 127.0.0.1 with a port the system chose, talked to
 * with curl (a client no one here wrote), its answers read with cJSON. What they are
 * compared with comes from outside the server: `quill generate --no-echo` and `quill
 * tokenize` (the command line), hand-written ChatML, the statuses and error bodies that
 * OpenAI's API documents, quill_embed through the library, coreutils (base64 -d, cmp) and
 * Prometheus' text format. */
#include <cjson/cJSON.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fileio.h"
#include "quill.h"
#include "test_adapter.h"
#include "test_util.h"

#define STORIES "models/stories260K.gguf"

typedef struct {
    TestProcess process;
    char url[64]; /* http://127.0.0.1:PORT */
    char dir[256];
} Server;

/* Starts `quill serve MODEL FLAGS --port 0` and reads the address it prints. */
static void server_start(Server *s, const char *model, const char *flags)
{
    snprintf(s->dir, sizeof s->dir, "%s", test_make_tmpdir());
    test_process_start(&s->process, false, "serve %s --port 0 %s", model, flags);
    cr_assert(test_process_wait_for(&s->process, 0, " positions)"), "serve did not start: %s",
              s->process.seen);
    const char *at = strstr(s->process.seen, "http://127.0.0.1:");
    cr_assert_not_null(at, "%s", s->process.seen);
    int port = atoi(at + strlen("http://127.0.0.1:"));
    cr_assert_gt(port, 0, "%s", s->process.seen);
    snprintf(s->url, sizeof s->url, "http://127.0.0.1:%d", port);
}

/* SIGINT: the server says it stops and exits 0. */
static void server_stop(Server *s)
{
    kill(s->process.pid, SIGINT);
    int status = test_process_finish(&s->process);
    cr_expect_eq(status, 0, "serve exited %d: %s", status, s->process.seen);
    cr_expect_not_null(strstr(s->process.seen, "stopping"), "%s", s->process.seen);
}

/* One request with curl: METHOD path, the body (NULL: none) sent from a file so that no
 * shell quoting touches it, extra curl arguments (headers). Returns the HTTP status; the
 * body goes to *body (malloc'd). */
static int request(const Server *s, const char *method, const char *path, const char *json,
                   const char *extra, char **body)
{
    char file[320], cmd[1024];
    snprintf(file, sizeof file, "%s/body.json", s->dir);
    if (json) {
        FILE *f = fopen(file, "wb");
        cr_assert_not_null(f);
        fwrite(json, 1, strlen(json), f);
        fclose(f);
    }
    snprintf(cmd, sizeof cmd, "curl -sS -N -X %s %s%s%s %s -w '\\n%%{http_code}' '%s%s'", method,
             json ? "-H 'Content-Type: application/json' --data-binary @" : "", json ? file : "",
             "", extra ? extra : "", s->url, path);
    char *out;
    int rc = test_run_capture(cmd, &out);
    cr_assert_eq(rc, 0, "%s: %s", cmd, out);
    char *last = strrchr(out, '\n');
    cr_assert_not_null(last, "%s", out);
    int status = atoi(last + 1);
    *last = '\0';
    *body = out;
    return status;
}

/* A request whose answer must be `status` with a JSON body: the body parsed. */
static cJSON *request_json(const Server *s, const char *method, const char *path,
                           const char *json, const char *extra, int status)
{
    char *body;
    int got = request(s, method, path, json, extra, &body);
    cr_assert_eq(got, status, "%s %s %s: %d, expected %d: %s", method, path, json ? json : "",
                 got, status, body);
    cJSON *parsed = cJSON_Parse(body);
    cr_assert_not_null(parsed, "not JSON: %s", body);
    free(body);
    return parsed;
}

static const char *string_at(const cJSON *root, const char *a, const char *b)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(root, a);
    if (b)
        x = cJSON_GetObjectItemCaseSensitive(x, b);
    return cJSON_IsString(x) ? x->valuestring : NULL;
}

/* A request whose answer must be `status` with OpenAI's error body: its message holds
 * `message`, its param is `param` (NULL: null), its code the status. Case i of a table. */
static void expect_error(const Server *s, const char *method, const char *path,
                         const char *json, int status, const char *param, const char *message,
                         int i)
{
    cJSON *r = request_json(s, method, path, json, NULL, status);
    const cJSON *error = cJSON_GetObjectItem(r, "error");
    cr_assert_not_null(error, "case %d: no error object", i);
    const char *got = string_at(error, "message", NULL);
    cr_expect(got && strstr(got, message), "case %d: message '%s' lacks '%s'", i,
              got ? got : "(none)", message);
    cr_expect_not_null(string_at(error, "type", NULL), "case %d", i);
    if (param)
        cr_expect_str_eq(string_at(error, "param", NULL), param, "case %d", i);
    else
        cr_expect(cJSON_IsNull(cJSON_GetObjectItem(error, "param")), "case %d: param is not "
                  "null", i);
    cr_expect_eq(cJSON_GetObjectItem(error, "code")->valueint, status, "case %d", i);
    cJSON_Delete(r);
}

/* choices[i].key (a string) */
static const char *choice_string(const cJSON *root, int i, const char *key)
{
    const cJSON *choice = cJSON_GetArrayItem(cJSON_GetObjectItem(root, "choices"), i);
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(choice, key);
    return cJSON_IsString(x) ? x->valuestring : NULL;
}

/* `quill generate MODEL --no-echo` with the arguments: its stdout, the generated bytes. */
static char *cli_text(const char *model, const char *args)
{
    char *out, *messages;
    int status;
    quill_stdout(&out, &messages, &status, "generate %s --no-echo %s", model, args);
    cr_assert_eq(status, 0, "%s", messages);
    free(messages);
    return out;
}

Test(serve, health_models_tokenize_detokenize, .timeout = 60)
{
    SHARED_FILE_OR_SKIP(model, STORIES);
    Server s;
    server_start(&s, model, "");
    cJSON *health = request_json(&s, "GET", "/health", NULL, NULL, 200);
    cr_expect_str_eq(string_at(health, "status", NULL), "ok");
    cJSON *models = request_json(&s, "GET", "/v1/models", NULL, NULL, 200);
    cr_expect_str_eq(string_at(models, "object", NULL), "list");
    const cJSON *m0 = cJSON_GetArrayItem(cJSON_GetObjectItem(models, "data"), 0);
    cr_expect_str_eq(string_at(m0, "id", NULL), "stories260K.gguf");
    cr_expect_str_eq(string_at(m0, "object", NULL), "model");

    /* /tokenize against `quill tokenize` (bos first there, as add_special asks here) */
    char *cli;
    cr_assert_eq(quill(&cli, "tokenize %s 'Once upon a time'", model), 0, "%s", cli);
    cJSON *tok = request_json(&s, "POST", "/tokenize",
                              "{\"content\": \"Once upon a time\", \"add_special\": true}", NULL,
                              200);
    const cJSON *ids = cJSON_GetObjectItem(tok, "tokens");
    char joined[256] = "";
    const cJSON *id;
    cJSON_ArrayForEach(id, ids)
        snprintf(joined + strlen(joined), sizeof joined - strlen(joined), "%s%d",
                 *joined ? " " : "", id->valueint);
    cli[strcspn(cli, "\n")] = '\0';
    cr_expect_str_eq(joined, cli);
    cr_expect_gt(cJSON_GetArraySize(ids), 2);

    /* /detokenize gives the text back */
    char *ids_json = cJSON_PrintUnformatted(ids);
    char body[512];
    snprintf(body, sizeof body, "{\"tokens\": %s}", ids_json);
    cJSON *text = request_json(&s, "POST", "/detokenize", body, NULL, 200);
    cr_expect_str_eq(string_at(text, "content", NULL), "Once upon a time");
    free(ids_json);
    free(cli);
    cJSON_Delete(health);
    cJSON_Delete(models);
    cJSON_Delete(tok);
    cJSON_Delete(text);
    server_stop(&s);
}

/* The token count of text by /tokenize, with the bos that the model adds. */
static int tokenize_count(const Server *s, const char *text)
{
    char body[1024];
    snprintf(body, sizeof body, "{\"content\": \"%s\", \"add_special\": true}", text);
    cJSON *r = request_json(s, "POST", "/tokenize", body, NULL, 200);
    int n = cJSON_GetArraySize(cJSON_GetObjectItem(r, "tokens"));
    cJSON_Delete(r);
    return n;
}

/* data[i].embedding of an /v1/embeddings answer, checked to be C numbers, into out. */
static void embedding_at(const cJSON *r, int i, int C, float *out)
{
    const cJSON *item = cJSON_GetArrayItem(cJSON_GetObjectItem(r, "data"), i);
    cr_assert_not_null(item, "no data[%d]", i);
    cr_expect_str_eq(string_at(item, "object", NULL), "embedding");
    cr_expect_eq(cJSON_GetObjectItem(item, "index")->valueint, i);
    const cJSON *vec = cJSON_GetObjectItem(item, "embedding");
    cr_assert_eq(cJSON_GetArraySize(vec), C, "data[%d]: %d numbers, expected %d", i,
                 cJSON_GetArraySize(vec), C);
    int j = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, vec) {
        cr_assert(cJSON_IsNumber(x), "data[%d].embedding[%d] is not a number", i, j);
        out[j++] = (float)x->valuedouble;
    }
}

/* The embedding of each text by quill_embed through the library, as the server is asked to
 * make them (mean pooling, scaled to length 1, on a context of the same threads), with the
 * LoRA adapter in `adapter` at `scale` (NULL: none). */
static void library_embeddings(const char *path, const char *adapter, float scale,
                               const char **texts, int n_texts, float *out)
{
    quill_model_params mp = quill_model_params_default();
    mp.n_threads = 1;
    quill_model *m = quill_model_load(path, &mp);
    cr_assert_not_null(m, "%s", quill_last_error());
    quill_context_params cp = quill_context_params_default();
    cp.n_threads = 1;
    quill_context *c = quill_context_new(m, &cp);
    cr_assert_not_null(c, "%s", quill_last_error());
    quill_lora *lora = adapter ? quill_lora_load(m, adapter) : NULL;
    cr_assert(!adapter || lora, "%s", quill_last_error());
    cr_assert_eq(quill_context_set_lora(c, &lora, &scale, lora ? 1 : 0), QUILL_OK, "%s",
                 quill_last_error());
    int C = quill_model_embedding_size(m);
    for (int i = 0; i < n_texts; i++) {
        quill_token ids[256];
        int n = quill_tokenize(m, texts[i], strlen(texts[i]), true, true, ids, 256);
        cr_assert_gt(n, 0, "%s", quill_last_error());
        cr_assert_eq(quill_embed(c, 0, ids, n, QUILL_POOL_MEAN, true, out + (size_t)i * C),
                     QUILL_OK, "%s", quill_last_error());
    }
    quill_context_free(c);
    quill_lora_free(lora);
    quill_model_free(m);
}

/* POST /v1/embeddings answers, in OpenAI's shape, what quill_embed gives through the
 * library for each input (within 1e-5), with usage counting /tokenize's tokens; the same
 * text as token ids gives the same vector, and base64 (what OpenAI's clients ask for by
 * default) is the floats' little-endian bytes, decoded here by coreutils' base64. */
Test(serve, embeddings_equal_the_library, .timeout = 60)
{
    SHARED_FILE_OR_SKIP(model, STORIES);
    const char *texts[] = {"Once upon a time", "The cat sat on the mat. It was happy."};
    Server s;
    server_start(&s, model, "--threads 1");
    cJSON *models = request_json(&s, "GET", "/v1/models", NULL, NULL, 200);
    const cJSON *meta = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(models,
                                                                                  "data"), 0),
                                            "meta");
    int C = cJSON_GetObjectItem(meta, "n_embd")->valueint;
    cJSON_Delete(models);
    float *want = malloc(sizeof *want * 2 * (size_t)C), *got = malloc(sizeof *got * (size_t)C);
    library_embeddings(model, NULL, 0, texts, 2, want);

    char body[1024];
    snprintf(body, sizeof body, "{\"model\": \"stories\", \"input\": [\"%s\", \"%s\"], "
             "\"encoding_format\": \"float\"}", texts[0], texts[1]);
    cJSON *r = request_json(&s, "POST", "/v1/embeddings", body, NULL, 200);
    cr_expect_str_eq(string_at(r, "object", NULL), "list");
    cr_expect_str_eq(string_at(r, "model", NULL), "stories260K.gguf");
    cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(r, "data")), 2);
    int compared = 0;
    for (int i = 0; i < 2; i++) {
        embedding_at(r, i, C, got);
        for (int j = 0; j < C; j++, compared++)
            cr_expect_float_eq(got[j], want[(size_t)i * C + j], 1e-5, "text %d [%d]", i, j);
    }
    cr_assert_eq(compared, 2 * C);
    int n0 = tokenize_count(&s, texts[0]), n1 = tokenize_count(&s, texts[1]);
    const cJSON *usage = cJSON_GetObjectItem(r, "usage");
    cr_expect_eq(cJSON_GetObjectItem(usage, "prompt_tokens")->valueint, n0 + n1);
    cr_expect_eq(cJSON_GetObjectItem(usage, "total_tokens")->valueint, n0 + n1);

    /* the first text as its token ids, alone and in an array of inputs */
    char ids_body[1024];
    snprintf(ids_body, sizeof ids_body, "{\"content\": \"%s\", \"add_special\": true}",
             texts[0]);
    cJSON *tok = request_json(&s, "POST", "/tokenize", ids_body, NULL, 200);
    char *ids = cJSON_PrintUnformatted(cJSON_GetObjectItem(tok, "tokens"));
    const char *shapes[] = {"{\"input\": %s}", "{\"input\": [%s, [1]]}"};
    for (int k = 0; k < 2; k++) {
        snprintf(body, sizeof body, shapes[k], ids);
        cJSON *by_ids = request_json(&s, "POST", "/v1/embeddings", body, NULL, 200);
        cr_expect_eq(cJSON_GetArraySize(cJSON_GetObjectItem(by_ids, "data")), k + 1);
        cr_expect_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(by_ids, "usage"),
                                         "prompt_tokens")->valueint, n0 + k);
        embedding_at(by_ids, 0, C, got);
        cr_expect_arr_eq(got, want, sizeof *got * (size_t)C, "%s", body);
        cJSON_Delete(by_ids);
    }

    /* base64: the same floats, bit for bit */
    snprintf(body, sizeof body, "{\"input\": \"%s\", \"encoding_format\": \"base64\"}",
             texts[0]);
    cJSON *b64 = request_json(&s, "POST", "/v1/embeddings", body, NULL, 200);
    const cJSON *item = cJSON_GetArrayItem(cJSON_GetObjectItem(b64, "data"), 0);
    const char *encoded = string_at(item, "embedding", NULL);
    cr_assert_not_null(encoded, "base64 embedding is not a string");
    char file[320], cmd[1024], *decoded;
    snprintf(file, sizeof file, "%s/embedding.b64", s.dir);
    FILE *f = fopen(file, "w");
    cr_assert_not_null(f);
    fputs(encoded, f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "base64 -d %s | od -An -v -tx1", file);
    cr_assert_eq(test_run_capture(cmd, &decoded), 0, "%s", decoded);
    embedding_at(r, 0, C, got);
    const unsigned char *bytes = (const unsigned char *)got;
    char *at = decoded;
    for (size_t b = 0; b < sizeof *got * (size_t)C; b++) {
        unsigned byte;
        int used;
        cr_assert_eq(sscanf(at, "%x%n", &byte, &used), 1, "byte %zu missing", b);
        cr_assert_eq(byte, bytes[b], "byte %zu: %02x, expected %02x", b, byte, bytes[b]);
        at += used;
    }
    cr_expect_eq(sscanf(at, "%*x"), EOF, "bytes after the %d floats", C);
    free(decoded);
    free(ids);
    free(want);
    free(got);
    cJSON_Delete(b64);
    cJSON_Delete(tok);
    cJSON_Delete(r);
    server_stop(&s);
}

/* Bad /v1/embeddings requests are 400s naming the field, and a long input names its token
 * count and the context's. */
Test(serve, embeddings_bad_input_names_the_field, .timeout = 60)
{
    SHARED_FILE_OR_SKIP(model, STORIES);
    Server s;
    server_start(&s, model, "--context 64");
    char long_input[1024] = "{\"input\": \"";
    char long_text[800] = "";
    for (int i = 0; i < 100; i++)
        strcat(long_text, " once");
    strcat(long_input, long_text);
    strcat(long_input, "\"}");
    char long_message[64];
    snprintf(long_message, sizeof long_message, "has %d tokens", tokenize_count(&s, long_text));
    char many[1024] = "{\"input\": [";
    for (int i = 0; i < 65; i++)
        strcat(many, i ? ", \"a\"" : "\"a\"");
    strcat(many, "]}");
    const struct {
        const char *body, *param, *message;
    } cases[] = {
        {"{\"input\": ", NULL, "not a JSON object"},
        {"{}", "input", "input is required"},
        {"{\"input\": \"\"}", "input", "input is empty"},
        {"{\"input\": []}", "input", "input is empty"},
        {"{\"input\": [\"a\", \"\"]}", "input", "input[1] is empty"},
        {"{\"input\": [[]]}", "input", "input[0] is empty"},
        {"{\"input\": 5}", "input", "input must be a string"},
        {"{\"input\": {\"text\": \"a\"}}", "input", "input must be a string"},
        {"{\"input\": [\"a\", 3]}", "input", "input[1] must be a string"},
        {"{\"input\": [1, \"a\"]}", "input", "input[1] is not a token id in [0, 512)"},
        {"{\"input\": [1, 99999]}", "input", "input[1] is not a token id in [0, 512)"},
        {"{\"input\": [[1], [2, 3.5]]}", "input", "input[1][1] is not a token id"},
        {"{\"input\": [[1], [\"a\"]]}", "input", "input[1][0] is not a token id"},
        {long_input, "input", long_message},
        {long_input, "input", "the context holds 64"},
        {many, "input", "65 inputs, more than 64"},
        {"{\"input\": \"a\", \"encoding_format\": \"hex\"}", "encoding_format",
         "encoding_format must be \"float\" or \"base64\""},
        {"{\"input\": \"a\", \"encoding_format\": 1}", "encoding_format",
         "encoding_format must be \"float\" or \"base64\""},
    };
    int n_cases = sizeof cases / sizeof *cases, compared = 0;
    for (int i = 0; i < n_cases; i++) {
        expect_error(&s, "POST", "/v1/embeddings", cases[i].body, 400, cases[i].param,
                     cases[i].message, i);
        compared++;
    }
    cr_assert_eq(compared, 18);
    cJSON_Delete(request_json(&s, "GET", "/v1/embeddings", NULL, NULL, 405));
    cJSON *good = request_json(&s, "POST", "/v1/embeddings", "{\"input\": \"Once\"}", NULL, 200);
    cr_expect_eq(cJSON_GetArraySize(cJSON_GetObjectItem(good, "data")), 1);
    cJSON_Delete(good);
    server_stop(&s);
}

/* One metric of /metrics: its HELP and TYPE lines and its sample's value. */
typedef struct {
    char name[64];
    char type[64];
    bool has_help;
    int n_samples;
    double value;
} Metric;

static Metric *metric_find(Metric *metrics, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (strcmp(metrics[i].name, name) == 0)
            return &metrics[i];
    return NULL;
}

/* Reads Prometheus' text format (0.0.4) line by line: "# HELP name text", "# TYPE name
 * type", then the family's samples "name value"; asserts each sample comes after its
 * family's HELP and TYPE and that each value is a number (strtod reads all of it).
 * Returns the count of families. */
static int metrics_parse(char *text, Metric *metrics, int cap)
{
    int n = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        char name[64], word[64];
        if (sscanf(line, "# HELP %63s %63s", name, word) == 2) {
            cr_assert_null(metric_find(metrics, n, name), "a second HELP for %s", name);
            cr_assert_lt(n, cap);
            snprintf(metrics[n].name, sizeof metrics[n].name, "%s", name);
            metrics[n++].has_help = true;
            continue;
        }
        Metric *m;
        if (sscanf(line, "# TYPE %63s %63s", name, word) == 2) {
            m = metric_find(metrics, n, name);
            cr_assert_not_null(m, "TYPE before HELP for %s", name);
            snprintf(m->type, sizeof m->type, "%s", word);
            continue;
        }
        cr_assert_neq(line[0], '#', "an unknown comment line: %s", line);
        char *space = strchr(line, ' ');
        cr_assert_not_null(space, "not a sample line: %s", line);
        *space = '\0';
        m = metric_find(metrics, n, line);
        cr_assert(m && m->type[0], "the sample %s has no HELP and TYPE before it", line);
        char *end;
        m->value = strtod(space + 1, &end);
        cr_assert(end != space + 1 && *end == '\0', "%s's value '%s' is not a number", line,
                  space + 1);
        m->n_samples++;
    }
    return n;
}

/* GET /metrics is Prometheus text: every metric has its HELP and TYPE, one sample each, a
 * number; an idle server has no active slot, an empty queue and --parallel slots. It wants
 * the API key, as the other endpoints but /health do. */
Test(serve, metrics_in_prometheus_text, .timeout = 60)
{
    SHARED_FILE_OR_SKIP(model, STORIES);
    Server s;
    server_start(&s, model, "--parallel 3 --api-key sesame");
    cJSON_Delete(request_json(&s, "GET", "/metrics", NULL, NULL, 401));
    char *out;
    cr_assert_eq(request(&s, "GET", "/metrics", NULL, "-i -H 'Authorization: Bearer sesame'",
                         &out), 200, "%s", out);
    cr_expect_not_null(strstr(out, "Content-Type: text/plain; version=0.0.4"), "%s", out);
    char *text = strstr(out, "\r\n\r\n");
    cr_assert_not_null(text, "%s", out);
    Metric metrics[16] = {0};
    int n = metrics_parse(text + 4, metrics, 16);
    const struct {
        const char *name, *type;
    } expected[] = {
        {"quill_requests_total", "counter"},
        {"quill_requests_rejected_total", "counter"},
        {"quill_prompt_tokens_total", "counter"},
        {"quill_prompt_tokens_cached_total", "counter"},
        {"quill_tokens_generated_total", "counter"},
        {"quill_tokens_per_second", "gauge"},
        {"quill_slots_active", "gauge"},
        {"quill_slots_total", "gauge"},
        {"quill_queue_length", "gauge"},
    };
    int n_expected = sizeof expected / sizeof *expected;
    cr_expect_eq(n, n_expected, "%d metrics, expected %d", n, n_expected);
    int compared = 0;
    for (int i = 0; i < n_expected; i++) {
        const Metric *m = metric_find(metrics, n, expected[i].name);
        cr_assert_not_null(m, "no %s", expected[i].name);
        cr_expect_str_eq(m->type, expected[i].type, "%s", m->name);
        cr_expect_eq(m->n_samples, 1, "%s", m->name);
        cr_expect_geq(m->value, 0, "%s", m->name);
        compared++;
    }
    cr_assert_eq(compared, 9);
    cr_expect_eq(metric_find(metrics, n, "quill_slots_total")->value, 3);
    cr_expect_eq(metric_find(metrics, n, "quill_slots_active")->value, 0);
    cr_expect_eq(metric_find(metrics, n, "quill_queue_length")->value, 0);
    free(out);
    server_stop(&s);
}

/* The "data: {...}" events of a stream, in order: their count, the JSON of each in out. */
static int sse_events(char *stream, cJSON **out, int cap, bool *done)
{
    int n = 0;
    *done = false;
    for (char *line = strtok(stream, "\n"); line; line = strtok(NULL, "\n")) {
        if (strncmp(line, "data: ", 6) != 0)
            continue;
        if (strcmp(line + 6, "[DONE]") == 0) {
            *done = true;
            continue;
        }
        cr_assert(!*done, "an event after [DONE]");
        cr_assert_lt(n, cap);
        out[n] = cJSON_Parse(line + 6);
        cr_assert_not_null(out[n], "not JSON: %s", line + 6);
        n++;
    }
    return n;
}

/* The text of a stream's chunks joined: choices[0].text, or delta.content for a chat. */
static char *stream_text(cJSON **events, int n, bool chat, const char **finish)
{
    size_t len = 0;
    char *text = calloc(1, 1 << 16);
    *finish = NULL;
    for (int i = 0; i < n; i++) {
        const cJSON *choice = cJSON_GetArrayItem(cJSON_GetObjectItem(events[i], "choices"), 0);
        const char *piece = chat ? string_at(choice, "delta", "content")
                                 : string_at(choice, "text", NULL);
        if (piece) {
            memcpy(text + len, piece, strlen(piece));
            len += strlen(piece);
        }
        const char *f = string_at(choice, "finish_reason", NULL);
        if (f)
            *finish = f;
    }
    return text;
}

/* A streamed completion: its chunks' text joined (malloc'd), checked to end with
 * data: [DONE]; finish gets the last finish reason, *n_events the chunk count. */
static char *stream_request(const Server *s, const char *path, const char *json, bool chat,
                            char *finish, size_t finish_cap, int *n_events)
{
    char *stream;
    cr_assert_eq(request(s, "POST", path, json, NULL, &stream), 200, "%s", stream);
    cJSON *events[64];
    bool done;
    int n = sse_events(stream, events, 64, &done);
    cr_expect(done, "no data: [DONE]");
    if (n > 0 && chat) { /* OpenAI's first chat chunk gives the role */
        cr_expect_str_eq(string_at(events[0], "object", NULL), "chat.completion.chunk");
        const cJSON *first = cJSON_GetArrayItem(cJSON_GetObjectItem(events[0], "choices"), 0);
        cr_expect_str_eq(string_at(first, "delta", "role"), "assistant");
    }
    const char *f;
    char *text = stream_text(events, n, chat, &f);
    snprintf(finish, finish_cap, "%s", f ? f : "");
    for (int i = 0; i < n; i++)
        cJSON_Delete(events[i]);
    free(stream);
    *n_events = n;
    return text;
}

/* Greedy text over HTTP, whole and streamed, is the command line's byte for byte. */
Test(serve, greedy_completion_equals_the_cli, .timeout = 60)
{
    SHARED_FILE_OR_SKIP(model, STORIES);
    char *expected = cli_text(model, "--prompt 'Once upon a time' --temperature 0 -n 40");
    cr_assert_gt(strlen(expected), 20);
    Server s;
    server_start(&s, model, "");
    const char *req = "{\"prompt\": \"Once upon a time\", \"temperature\": 0, \"max_tokens\": 40%s}";
    char body[256];
    snprintf(body, sizeof body, req, "");
    cJSON *whole = request_json(&s, "POST", "/v1/completions", body, NULL, 200);
    cr_expect_str_eq(choice_string(whole, 0, "text"), expected);
    cr_expect_str_eq(choice_string(whole, 0, "finish_reason"), "length");
    cr_expect_str_eq(string_at(whole, "object", NULL), "text_completion");
    cr_expect_str_eq(string_at(whole, "model", NULL), "stories260K.gguf");
    cr_expect_not_null(string_at(whole, "id", NULL));
    const cJSON *usage = cJSON_GetObjectItem(whole, "usage");
    cr_expect_eq(cJSON_GetObjectItem(usage, "completion_tokens")->valueint, 40);
    cr_expect_eq(cJSON_GetObjectItem(usage, "prompt_tokens")->valueint, 5); /* bos + 4 */
    cr_expect_eq(cJSON_GetObjectItem(usage, "total_tokens")->valueint, 45);

    snprintf(body, sizeof body, req, ", \"stream\": true");
    char finish[16];
    int n;
    char *text = stream_request(&s, "/v1/completions", body, false, finish, sizeof finish, &n);
    cr_expect_geq(n, 10, "%d events: one per token expected", n);
    cr_expect_str_eq(text, expected);
    cr_expect_str_eq(finish, "length");
    free(text);

    /* stream_options.include_usage: a last chunk, with no choices, counts the tokens */
    snprintf(body, sizeof body, req, ", \"stream\": true, \"stream_options\": "
                                     "{\"include_usage\": true}");
    char *stream;
    cr_assert_eq(request(&s, "POST", "/v1/completions", body, NULL, &stream), 200, "%s", stream);
    cJSON *events[64];
    bool done;
    n = sse_events(stream, events, 64, &done);
    cr_assert_gt(n, 1);
    const cJSON *last_usage = cJSON_GetObjectItem(events[n - 1], "usage");
    cr_assert_not_null(last_usage, "no usage chunk last");
    cr_expect_eq(cJSON_GetArraySize(cJSON_GetObjectItem(events[n - 1], "choices")), 0);
    cr_expect_eq(cJSON_GetObjectItem(last_usage, "prompt_tokens")->valueint, 5);
    cr_expect_eq(cJSON_GetObjectItem(last_usage, "completion_tokens")->valueint, 40);
    for (int i = 0; i < n; i++)
        cJSON_Delete(events[i]);
    free(stream);
    cJSON_Delete(whole);
    free(expected);
    server_stop(&s);
}

/* n choices of prompts, a stop string, bad words and a seed: what the command line gives
 * for each. */
Test(serve, choices_stop_and_seed_follow_the_cli, .timeout = 60)
{
    SHARED_FILE_OR_SKIP(model, STORIES);
    char *stopped = cli_text(model, "--prompt 'Once upon a time' --temperature 0 -n 40 "
                                    "--stop Lily");
    char *banned = cli_text(model, "--prompt 'Once upon a time' --temperature 0 -n 40 "
                                   "--bad-words Lily,park");
    char *seeded = cli_text(model, "--prompt 'Once upon a time' --temperature 1 -n 20 "
                                   "--seed 7 --top-k 0 --top-p 1 --min-p 0");
    Server s;
    server_start(&s, model, "");
    cJSON *a = request_json(&s, "POST", "/v1/completions",
                            "{\"prompt\": [\"Once upon a time\", \"Once upon a time\"], "
                            "\"temperature\": 0, \"max_tokens\": 40, \"stop\": [\"Lily\"]}",
                            NULL, 200);
    cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(a, "choices")), 2);
    for (int i = 0; i < 2; i++) {
        cr_expect_str_eq(choice_string(a, i, "text"), stopped);
        cr_expect_str_eq(choice_string(a, i, "finish_reason"), "stop");
    }
    cJSON *c = request_json(&s, "POST", "/v1/completions",
                            "{\"prompt\": \"Once upon a time\", \"temperature\": 0, "
                            "\"max_tokens\": 40, \"bad_words\": [\"Lily\", \"park\"]}",
                            NULL, 200);
    cr_expect_str_eq(choice_string(c, 0, "text"), banned);
    cr_expect_null(strstr(banned, "Lily"), "%s", banned);
    cr_expect_str_neq(banned, stopped);
    cJSON *b = request_json(&s, "POST", "/v1/completions",
                            "{\"prompt\": \"Once upon a time\", \"temperature\": 1, "
                            "\"max_tokens\": 20, \"seed\": 7, \"top_k\": 0, \"top_p\": 1, "
                            "\"min_p\": 0, \"n\": 3}", NULL, 200);
    cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(b, "choices")), 3);
    cr_expect_str_eq(choice_string(b, 0, "text"), seeded);
    cr_expect_str_neq(choice_string(b, 1, "text"), seeded, "choice 1 repeats choice 0");
    free(stopped);
    free(banned);
    free(seeded);
    cJSON_Delete(c);
    cJSON_Delete(a);
    cJSON_Delete(b);
    server_stop(&s);
}

/* llama-server's DRY fields and min_keep: a greedy completion with them is quill generate's
 * text with the same flags (and differs from the one without DRY); bad values are a 400
 * naming the field. */
Test(serve, dry_fields_follow_the_cli, .timeout = 60)
{
    SHARED_FILE_OR_SKIP(model, STORIES);
    const char *flags = "--prompt 'Once upon a time' --temperature 0 -n 100 --min-keep 2 "
                        "--dry-multiplier 2 --dry-base 1.5 --dry-allowed-length 1 "
                        "--dry-penalty-last-n 60 --dry-sequence-breaker Lily";
    char *dry = cli_text(model, flags);
    char *plain = cli_text(model, "--prompt 'Once upon a time' --temperature 0 -n 100");
    cr_assert_str_neq(dry, plain, "DRY changed nothing: the test would mean nothing");
    Server s;
    server_start(&s, model, "");
    cJSON *r = request_json(&s, "POST", "/v1/completions",
                            "{\"prompt\": \"Once upon a time\", \"temperature\": 0, "
                            "\"max_tokens\": 100, \"min_keep\": 2, \"dry_multiplier\": 2, "
                            "\"dry_base\": 1.5, \"dry_allowed_length\": 1, "
                            "\"dry_penalty_last_n\": 60, \"dry_sequence_breakers\": [\"Lily\"]}",
                            NULL, 200);
    cr_expect_str_eq(choice_string(r, 0, "text"), dry);
    const struct {
        const char *body, *param, *message;
    } bad[] = {
        {"{\"prompt\": \"a\", \"dry_base\": 0.5}", "dry_base", "dry_base"},
        {"{\"prompt\": \"a\", \"dry_multiplier\": -1}", "dry_multiplier", "dry_multiplier"},
        {"{\"prompt\": \"a\", \"dry_penalty_last_n\": -2}", "dry_penalty_last_n",
         "dry_penalty_last_n"},
        {"{\"prompt\": \"a\", \"dry_sequence_breakers\": []}", "dry_sequence_breakers",
         "dry_sequence_breakers"},
        {"{\"prompt\": \"a\", \"min_keep\": -1}", "min_keep", "min_keep"},
        {"{\"prompt\": \"a\", \"dry_multiplier\": 1, \"dry_sequence_breakers\": [\"\"]}",
         NULL, "DRY sequence breaker 0 is empty"},
    };
    for (int i = 0; i < 6; i++)
        expect_error(&s, "POST", "/v1/completions", bad[i].body, 400, bad[i].param,
                     bad[i].message, i);
    cJSON_Delete(r);
    free(dry);
    free(plain);
    server_stop(&s);
}

/* Bad requests each get their status and an OpenAI error body naming the field; the
 * server answers a good request afterwards. */
Test(serve, malformed_requests_get_error_bodies, .timeout = 120)
{
    SHARED_FILE_OR_SKIP(model, STORIES);
    Server s;
    server_start(&s, model, "--max-body 4096 --context 64");
    char long_prompt[4096] = "{\"prompt\": \"";
    for (int i = 0; i < 100; i++)
        strcat(long_prompt, " once");
    strcat(long_prompt, "\"}");
    /* a logit_bias of more entries than the model has tokens (it fits --max-body) */
    char huge_bias[4096] = "{\"prompt\": \"a\", \"logit_bias\": {";
    for (int i = 0; i < 513; i++)
        snprintf(huge_bias + strlen(huge_bias), sizeof huge_bias - strlen(huge_bias), "%s\"%d\": 1",
                 i ? "," : "", i % 10);
    strcat(huge_bias, "}}");
    char huge[6000] = "{\"prompt\": \"";
    memset(huge + strlen(huge), 'a', 5000);
    strcat(huge, "\"}");
    const struct {
        const char *method, *path, *body;
        int status;
        const char *param; /* NULL: "param" is null */
        const char *message; /* a part of the message */
    } cases[] = {
        {"POST", "/v1/completions", "{\"prompt\": ", 400, NULL, "not a JSON object"},
        {"POST", "/v1/completions", "[1, 2]", 400, NULL, "not a JSON object"},
        {"POST", "/v1/completions", "{}", 400, "prompt", "prompt is required"},
        {"POST", "/v1/completions", "{\"prompt\": 5}", 400, "prompt", "prompt must be"},
        {"POST", "/v1/completions", "{\"prompt\": [\"a\", 3]}", 400, "prompt", "prompt[1]"},
        {"POST", "/v1/completions", "{\"prompt\": \"\"}", 400, "prompt", "empty"},
        {"POST", "/v1/completions", "{\"prompt\": \"a\", \"temperature\": \"hot\"}", 400,
         "temperature", "temperature must be a number"},
        {"POST", "/v1/completions", "{\"prompt\": \"a\", \"temperature\": -1}", 400,
         "temperature", "temperature must be >= 0"},
        {"POST", "/v1/completions", "{\"prompt\": \"a\", \"top_p\": 1.5}", 400, "top_p",
         "top_p must be <= 1"},
        {"POST", "/v1/completions", "{\"prompt\": \"a\", \"max_tokens\": -1}", 400,
         "max_tokens", "max_tokens must be >= 0"},
        {"POST", "/v1/completions", "{\"prompt\": \"a\", \"max_tokens\": 2.5}", 400,
         "max_tokens", "must be an integer"},
        {"POST", "/v1/completions", "{\"prompt\": \"a\", \"seed\": 1.5}", 400, "seed",
         "must be an integer"},
        {"POST", "/v1/completions", "{\"prompt\": \"a\", \"n\": 0}", 400, "n", "n must be >= 1"},
        {"POST", "/v1/completions", "{\"prompt\": \"a\", \"n\": 17}", 400, "n", "n must be <= 16"},
        {"POST", "/v1/completions", "{\"prompt\": \"a\", \"stream\": 1}", 400, "stream",
         "true or false"},
        {"POST", "/v1/completions", "{\"prompt\": \"a\", \"stop\": [1]}", 400, "stop", "stop[0]"},
        {"POST", "/v1/completions", "{\"prompt\": \"a\", \"logit_bias\": {\"x\": 1}}", 400,
         "logit_bias", "not a token id"},
        {"POST", "/v1/completions", "{\"prompt\": \"a\", \"logit_bias\": {\"9999\": 1}}", 400,
         "logit_bias", "not a token id"},
        {"POST", "/v1/completions", "{\"prompt\": \"a\", \"logit_bias\": {\"5\": 1000}}", 400,
         "logit_bias", "[-100, 100]"},
        {"POST", "/v1/completions", "{\"prompt\": \"a\", \"samplers\": [\"top_k\", \"nope\"]}",
         400, "samplers", "nope"},
        {"POST", "/v1/completions", "{\"prompt\": \"a\", \"quill_trace\": 9}", 400,
         "quill_trace", "<= 8"},
        {"POST", "/v1/completions", long_prompt, 400, "prompt", "holds 64"},
        {"POST", "/v1/completions", huge, 413, NULL, "4096 bytes"},
        {"POST", "/v1/chat/completions", "{\"messages\": [{\"role\": \"user\"}]}", 400,
         "messages", "messages[0].content"},
        {"POST", "/v1/chat/completions",
         "{\"messages\": [{\"role\": \"robot\", \"content\": \"hi\"}]}", 400, "messages",
         "messages[0].role"},
        {"POST", "/v1/chat/completions",
         "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}", 400, "messages",
         "no chat template"},
        {"POST", "/tokenize", "{\"content\": 5}", 400, "content", "content must be a string"},
        {"POST", "/detokenize", "{\"tokens\": [1, 100000]}", 400, "tokens", "tokens[1]"},
        {"POST", "/v1/completions", "{\"prompt\": \"a\", \"temperature\": NaN}", 400, NULL,
         "not a JSON object"},
        {"POST", "/v1/completions", "{\"prompt\": \"a\", \"logit_bias\": {\"5\": 1e308}}", 400,
         "logit_bias", "[-100, 100]"},
        {"POST", "/v1/completions", huge_bias, 400, "logit_bias", "the vocabulary 512"},
        {"POST", "/v1/completions", "{\"prompt\": \"a\", \"logprobs\": 21}", 400, "logprobs",
         "<= 20"},
        {"POST", "/v1/completions", "{\"prompt\": \"a\", \"beam_size\": 17}", 400, "beam_size",
         "<= 16"},
        {"POST", "/v1/completions", "{\"prompt\": \"a\", \"beam_size\": 2, \"n\": 3}", 400, "n",
         "at most beam_size"},
        {"POST", "/v1/completions", "{\"prompt\": \"a\", \"ignore_eos\": \"yes\"}", 400,
         "ignore_eos", "true or false"},
        {"GET", "/v1/nothing", NULL, 404, NULL, "/v1/nothing"},
        {"GET", "/v1/completions", NULL, 405, NULL, "does not take GET"},
        {"DELETE", "/health", NULL, 405, NULL, "does not take DELETE"},
    };
    int n_cases = sizeof cases / sizeof *cases, compared = 0;
    for (int i = 0; i < n_cases; i++) {
        expect_error(&s, cases[i].method, cases[i].path, cases[i].body, cases[i].status,
                     cases[i].param, cases[i].message, i);
        compared++;
    }
    cr_assert_eq(compared, 38);
    cJSON *good = request_json(&s, "POST", "/v1/completions",
                               "{\"prompt\": \"Once\", \"max_tokens\": 3}", NULL, 200);
    cr_expect_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(good, "usage"),
                                     "completion_tokens")->valueint, 3);
    cJSON_Delete(good);
    server_stop(&s);
}

/* --api-key: every endpoint but /health wants "Authorization: Bearer KEY". */
Test(serve, api_key_is_required, .timeout = 60)
{
    SHARED_FILE_OR_SKIP(model, STORIES);
    Server s;
    server_start(&s, model, "--api-key sesame");
    const char *wrong[] = {NULL, "-H 'Authorization: Bearer sesam'",
                           "-H 'Authorization: Bearer sesame2'", "-H 'Authorization: sesame'"};
    for (int i = 0; i < 4; i++) {
        cJSON *r = request_json(&s, "GET", "/v1/models", NULL, wrong[i], 401);
        cr_expect_str_eq(string_at(r, "error", "type"), "authentication_error");
        cJSON_Delete(r);
    }
    cJSON_Delete(request_json(&s, "GET", "/v1/models", NULL,
                              "-H 'Authorization: Bearer sesame'", 200));
    cJSON_Delete(request_json(&s, "GET", "/health", NULL, NULL, 200));
    server_stop(&s);
}

static void add_chatml_template(GgufWriter *w)
{
    gguf_writer_add_str(w, "tokenizer.chat_template",
                        "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}"
                        "<|im_end|>\n{% endfor %}");
}

/* A chat completion is the completion of the conversation in ChatML (written out here by
 * hand), whole and streamed, with the chat shapes. */
Test(serve, chat_completion_uses_the_template, .timeout = 60)
{
    SHARED_FILE_OR_SKIP(model, STORIES);
    const char *dir = test_make_tmpdir();
    char chatml[256];
    snprintf(chatml, sizeof chatml, "%s/chatml.gguf", dir);
    test_gguf_copy(model, chatml, "tokenizer.chat_template", add_chatml_template);
    /* ChatML, the conversation and the assistant's turn opened; single quotes keep the
     * newlines (the last one too) on the shell's command line */
    char *expected = cli_text(model, "--temperature 0 -n 12 --prompt "
                                     "'<|im_start|>system\nBe kind.<|im_end|>\n"
                                     "<|im_start|>user\nTell a story<|im_end|>\n"
                                     "<|im_start|>assistant\n'");
    Server s;
    server_start(&s, chatml, "");
    const char *req = "{\"messages\": [{\"role\": \"system\", \"content\": \"Be kind.\"}, "
                      "{\"role\": \"user\", \"content\": \"Tell a story\"}], "
                      "\"temperature\": 0, \"max_tokens\": 12%s}";
    char body[512];
    snprintf(body, sizeof body, req, "");
    cJSON *r = request_json(&s, "POST", "/v1/chat/completions", body, NULL, 200);
    cr_expect_str_eq(string_at(r, "object", NULL), "chat.completion");
    const cJSON *choice = cJSON_GetArrayItem(cJSON_GetObjectItem(r, "choices"), 0);
    cr_expect_str_eq(string_at(choice, "message", "role"), "assistant");
    cr_expect_str_eq(string_at(choice, "message", "content"), expected);
    snprintf(body, sizeof body, req, ", \"stream\": true");
    char finish[16];
    int n;
    char *text = stream_request(&s, "/v1/chat/completions", body, true, finish, sizeof finish,
                                &n);
    cr_expect_gt(n, 2);
    cr_expect_str_eq(text, expected);
    cr_expect_str_eq(finish, "length");
    free(text);
    cJSON_Delete(r);
    free(expected);
    server_stop(&s);
}

/* "quill_trace": K puts each stage's K best survivors into every token's chunk: their
 * probabilities are a distribution's (positive, most likely first, summing to at most 1),
 * and at temperature 0 the token drawn is the final list's first. */
Test(serve, trace_shows_each_stage, .timeout = 60)
{
    SHARED_FILE_OR_SKIP(model, STORIES);
    Server s;
    server_start(&s, model, "");
    char *stream;
    cr_assert_eq(request(&s, "POST", "/v1/completions",
                         "{\"prompt\": \"Once upon a time\", \"temperature\": 0, \"max_tokens\": 8, "
                         "\"stream\": true, \"quill_trace\": 3}", NULL, &stream), 200);
    cJSON *events[64];
    bool done;
    int n = sse_events(stream, events, 64, &done), traced = 0;
    for (int i = 0; i < n; i++) {
        const cJSON *choice = cJSON_GetArrayItem(cJSON_GetObjectItem(events[i], "choices"), 0);
        const cJSON *stages = cJSON_GetObjectItem(choice, "quill_stages");
        if (!stages)
            continue;
        traced++;
        const cJSON *stage, *last = NULL;
        cJSON_ArrayForEach(stage, stages) {
            const cJSON *top = cJSON_GetObjectItem(stage, "top");
            cr_expect_leq(cJSON_GetArraySize(top), 3);
            double sum = 0, prev = 2;
            const cJSON *cand;
            cJSON_ArrayForEach(cand, top) {
                double p = cJSON_GetObjectItem(cand, "p")->valuedouble;
                cr_expect(p > 0 && p <= prev, "p %g after %g", p, prev);
                cr_expect_not_null(string_at(cand, "text", NULL));
                sum += p;
                prev = p;
            }
            cr_expect_leq(sum, 1 + 1e-6);
            last = stage;
        }
        cr_assert_not_null(last);
        cr_expect_str_eq(string_at(last, "stage", NULL), "chain");
        const cJSON *chosen = cJSON_GetObjectItem(choice, "quill_token");
        const cJSON *best = cJSON_GetArrayItem(cJSON_GetObjectItem(last, "top"), 0);
        cr_expect_eq(cJSON_GetObjectItem(chosen, "id")->valueint,
                     cJSON_GetObjectItem(best, "token")->valueint);
        cr_expect_float_eq(cJSON_GetObjectItem(chosen, "p")->valuedouble,
                           cJSON_GetObjectItem(best, "p")->valuedouble, 1e-9);
    }
    cr_expect_eq(traced, 8, "%d traced chunks for 8 tokens", traced);
    for (int i = 0; i < n; i++)
        cJSON_Delete(events[i]);
    free(stream);
    server_stop(&s);
}

/* curl GET path into the file `into`: the HTTP status; the Content-Type goes to type. */
static int download(const Server *s, const char *path, const char *into, char *type,
                    size_t type_cap)
{
    char cmd[1024], *out;
    snprintf(cmd, sizeof cmd, "curl -sS --path-as-is -o '%s' -w '%%{http_code} "
             "%%{content_type}' '%s%s'", into, s->url, path);
    cr_assert_eq(test_run_capture(cmd, &out), 0, "%s: %s", cmd, out);
    int status = atoi(out);
    const char *space = strchr(out, ' ');
    snprintf(type, type_cap, "%s", space ? space + 1 : "");
    free(out);
    return status;
}

/* GET / serves the playground page's three files, compiled into the binary: a copy of the
 * binary alone in an empty folder (no checkout around it) answers them byte for byte as
 * they are in generate/playground/, and answers nothing else: a file of the checkout, a
 * path with "..", a URL-encoded one are 404s. */
Test(serve, playground_is_built_into_the_binary, .timeout = 60)
{
    SHARED_FILE_OR_SKIP(model, STORIES);
    char dir[256], cmd[1024], bin[320], got[320], type[128], *out;
    snprintf(dir, sizeof dir, "%s", test_make_tmpdir());
    snprintf(bin, sizeof bin, "%s/quill", dir);
    snprintf(got, sizeof got, "%s/got", dir);
    snprintf(cmd, sizeof cmd, "cp %s %s", test_quill_bin(), bin);
    cr_assert_eq(test_run_capture(cmd, &out), 0, "%s", out);
    free(out);
    setenv("QUILL_BIN", bin, 1);
    Server s;
    server_start(&s, model, "");
    const struct {
        const char *path, *file, *type;
    } pages[] = {
        {"/", "index.html", "text/html; charset=utf-8"},
        {"/index.html", "index.html", "text/html; charset=utf-8"},
        {"/playground.js", "playground.js", "text/javascript; charset=utf-8"},
        {"/playground.css", "playground.css", "text/css; charset=utf-8"},
    };
    int compared = 0;
    for (int i = 0; i < 4; i++) {
        cr_expect_eq(download(&s, pages[i].path, got, type, sizeof type), 200, "%s",
                     pages[i].path);
        cr_expect_str_eq(type, pages[i].type, "%s", pages[i].path);
        snprintf(cmd, sizeof cmd, "cmp generate/playground/%s %s", pages[i].file, got);
        cr_expect_eq(test_run_capture(cmd, &out), 0, "%s: %s", pages[i].path, out);
        free(out);
        compared++;
    }
    cr_assert_eq(compared, 4);
    const char *not_pages[] = {"/Makefile", "/generate/playground/index.html",
                               "/../generate/playground/index.html", "/%2e%2e/Makefile",
                               "/playground/index.html", "/index.html/", "/index.htm"};
    compared = 0;
    for (int i = 0; i < 7; i++) {
        cr_expect_eq(download(&s, not_pages[i], got, type, sizeof type), 404, "%s",
                     not_pages[i]);
        compared++;
    }
    cr_assert_eq(compared, 7);
    char *body;
    cr_expect_eq(request(&s, "POST", "/", "{}", NULL, &body), 405);
    free(body);
    server_stop(&s);
}

/* SIGTERM stops the server as SIGINT does: it says so and exits 0; the port is free after. */
Test(serve, sigterm_stops_cleanly, .timeout = 60)
{
    SHARED_FILE_OR_SKIP(model, STORIES);
    Server s;
    server_start(&s, model, "--parallel 2");
    cr_expect_not_null(strstr(s.process.seen, "(2 slots of 128 positions)"), "%s",
                       s.process.seen);
    cJSON_Delete(request_json(&s, "GET", "/health", NULL, NULL, 200));
    kill(s.process.pid, SIGTERM);
    cr_expect_eq(test_process_finish(&s.process), 0, "%s", s.process.seen);
    cr_expect_not_null(strstr(s.process.seen, "Terminated: stopping"), "%s", s.process.seen);
    char *out;
    char cmd[256];
    snprintf(cmd, sizeof cmd, "curl -sS '%s/health'", s.url);
    cr_expect_neq(test_run_capture(cmd, &out), 0, "still answering after SIGTERM: %s", out);
    free(out);
}

/* Bad flags are one clear error each, before anything is loaded or bound. */
Test(serve, bad_flags_are_clean_errors, .timeout = 60)
{
    SHARED_FILE_OR_SKIP(model, STORIES);
    expect_clean_error("--port", "serve %s --port 70000", model);
    expect_clean_error("--parallel", "serve %s --parallel 0", model);
    expect_clean_error("--host 'localhost' is not an IPv4 address", "serve %s --host localhost",
                       model);
    expect_clean_error("no-such.gguf", "serve no-such.gguf");
}

/* --lora and --lora-scale: every endpoint answers as the adapted model. A greedy
 * completion (the engine's context), a beam search and a guided completion (contexts made
 * per request) give `quill generate --lora --lora-scale`'s text,
 * which is not the base model's; an embedding is quill_embed's with the adapter applied
 * through the library. A bad adapter is one error line and exit 1 before the server
 * listens. */
Test(serve, lora_adapters_apply_to_every_endpoint, .timeout = 120)
{
    SHARED_FILE_OR_SKIP(model, STORIES);
    char adapter[512], lora[640], args[1024];
    snprintf(adapter, sizeof adapter, "%s/adapter.gguf", test_make_tmpdir());
    test_write_adapter(adapter, model, &TEST_ADAPTER);
    snprintf(lora, sizeof lora, "--lora %s --lora-scale 0.5", adapter);
    const char *greedy_args = "--prompt 'Once upon a time' --temperature 0 -n 30";
    snprintf(args, sizeof args, "%s %s", greedy_args, lora);
    char *greedy = cli_text(model, args);
    char *base = cli_text(model, greedy_args);
    cr_assert_gt(strlen(greedy), 20);
    cr_assert_str_neq(greedy, base, "the adapter changes the text");
    snprintf(args, sizeof args, "--prompt 'Once upon a time' --beam-size 4 -n 30 %s", lora);
    char *beam = cli_text(model, args);
    snprintf(args, sizeof args, "%s --guide 'Lily was very happy. ' --guide-strength 3 %s",
             greedy_args, lora);
    char *guided = cli_text(model, args);

    Server s;
    snprintf(args, sizeof args, "--threads 1 %s", lora);
    server_start(&s, model, args);
    const char *asked[][2] = {
        {"/v1/completions", "{\"prompt\": \"Once upon a time\", \"temperature\": 0, "
                            "\"max_tokens\": 30}"},
        {"/v1/completions", "{\"prompt\": \"Once upon a time\", \"beam_size\": 4, "
                            "\"max_tokens\": 30}"},
        {"/v1/completions", "{\"prompt\": \"Once upon a time\", \"guide\": \"Lily was very "
                            "happy. \", \"guidance_scale\": 3, \"temperature\": 0, "
                            "\"max_tokens\": 30}"},
    };
    const char *expected[] = {greedy, beam, guided};
    for (int i = 0; i < 3; i++) {
        cJSON *r = request_json(&s, "POST", asked[i][0], asked[i][1], NULL, 200);
        cr_expect_str_eq(choice_string(r, 0, "text"), expected[i], "request %d: %s", i,
                         asked[i][1]);
        cJSON_Delete(r);
    }
    const char *text = "Once upon a time";
    cJSON *r = request_json(&s, "POST", "/v1/embeddings", "{\"input\": \"Once upon a time\", "
                            "\"encoding_format\": \"float\"}", NULL, 200);
    int C = cJSON_GetArraySize(cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(r,
                               "data"), 0), "embedding"));
    cr_assert_gt(C, 0);
    float *got = malloc(sizeof *got * (size_t)C), *want = malloc(sizeof *want * (size_t)C),
          *plain = malloc(sizeof *plain * (size_t)C);
    embedding_at(r, 0, C, got);
    library_embeddings(model, adapter, 0.5f, &text, 1, want);
    library_embeddings(model, NULL, 0, &text, 1, plain);
    float far_from_base = 0;
    for (int j = 0; j < C; j++) {
        cr_expect_float_eq(got[j], want[j], 1e-5, "embedding[%d]", j);
        far_from_base = fmaxf(far_from_base, fabsf(got[j] - plain[j]));
    }
    cr_expect_gt(far_from_base, 1e-3, "the adapter changes the embedding");
    free(plain);
    free(want);
    free(got);
    cJSON_Delete(r);
    server_stop(&s);
    free(guided);
    free(beam);
    free(base);
    free(greedy);

    expect_clean_error("not an adapter", "serve %s --lora %s", model, model);
    expect_clean_error("1 --lora-scale value for 0 --lora adapters", "serve %s --lora-scale 2",
                       model);
    expect_clean_error("no-such-adapter.gguf", "serve %s --lora no-such-adapter.gguf", model);
}

/* llama-server's /lora-adapters: GET lists each adapter's id, path and scale; POST sets
 * the scales ([{"id", "scale"}], an adapter not named: 0), and from then on a greedy
 * completion (on slots whose cached prompt was computed at the old scale) and a beam search
 * give `quill generate --lora-scale`'s text at the new scale, scale 0 the base model's. A
 * body that is not such a list is a 400 naming the field. */
Test(serve, lora_adapters_endpoint_lists_and_sets_scales, .timeout = 120)
{
    SHARED_FILE_OR_SKIP(model, STORIES);
    char adapter[512], args[1024];
    snprintf(adapter, sizeof adapter, "%s/adapter.gguf", test_make_tmpdir());
    test_write_adapter(adapter, model, &TEST_ADAPTER);
    const char *greedy_args = "--prompt 'Once upon a time' --temperature 0 -n 30";
    const char *beam_args = "--prompt 'Once upon a time' --beam-size 4 -n 30";
    snprintf(args, sizeof args, "%s --lora %s --lora-scale 0.5", greedy_args, adapter);
    char *at_half = cli_text(model, args);
    snprintf(args, sizeof args, "%s --lora %s", greedy_args, adapter);
    char *at_one = cli_text(model, args);
    snprintf(args, sizeof args, "%s --lora %s", beam_args, adapter);
    char *beam_at_one = cli_text(model, args);
    char *base = cli_text(model, greedy_args);
    cr_assert_str_neq(at_one, at_half);
    cr_assert_str_neq(at_one, base);

    Server s;
    snprintf(args, sizeof args, "--parallel 2 --lora %s --lora-scale 0.5", adapter);
    server_start(&s, model, args);
    const char *greedy = "{\"prompt\": \"Once upon a time\", \"temperature\": 0, "
                         "\"max_tokens\": 30}";
    cJSON *r = request_json(&s, "POST", "/v1/completions", greedy, NULL, 200);
    cr_expect_str_eq(choice_string(r, 0, "text"), at_half);
    cJSON_Delete(r);
    cJSON *list = request_json(&s, "GET", "/lora-adapters", NULL, NULL, 200);
    cr_assert_eq(cJSON_GetArraySize(list), 1);
    const cJSON *first = cJSON_GetArrayItem(list, 0);
    cr_expect_eq(cJSON_GetObjectItem(first, "id")->valueint, 0);
    cr_expect_str_eq(string_at(first, "path", NULL), adapter);
    cr_expect_float_eq(cJSON_GetObjectItem(first, "scale")->valuedouble, 0.5, 1e-9);
    cJSON_Delete(list);

    const char *scales[] = {"[{\"id\": 0, \"scale\": 1}]", "[]"};
    const char *expected[] = {at_one, base};
    for (int i = 0; i < 2; i++) {
        cJSON *ok = request_json(&s, "POST", "/lora-adapters", scales[i], NULL, 200);
        cr_expect(cJSON_IsTrue(cJSON_GetObjectItem(ok, "success")), "%s", scales[i]);
        cJSON_Delete(ok);
        r = request_json(&s, "POST", "/v1/completions", greedy, NULL, 200);
        cr_expect_str_eq(choice_string(r, 0, "text"), expected[i], "after %s", scales[i]);
        cJSON_Delete(r);
        if (i == 0) {
            r = request_json(&s, "POST", "/v1/completions", "{\"prompt\": \"Once upon a "
                             "time\", \"beam_size\": 4, \"max_tokens\": 30}", NULL, 200);
            cr_expect_str_eq(choice_string(r, 0, "text"), beam_at_one);
            cJSON_Delete(r);
        }
    }
    list = request_json(&s, "GET", "/lora-adapters", NULL, NULL, 200);
    cr_expect_float_eq(cJSON_GetObjectItem(cJSON_GetArrayItem(list, 0), "scale")->valuedouble,
                       0.0, 1e-9, "an adapter not named gets 0");
    cJSON_Delete(list);
    expect_error(&s, "POST", "/lora-adapters", "{\"id\": 0, \"scale\": 1}", 400, NULL,
                 "JSON array", 0);
    expect_error(&s, "POST", "/lora-adapters", "[{\"id\": 1, \"scale\": 1}]", 400, "id",
                 "id", 1);
    expect_error(&s, "POST", "/lora-adapters", "[{\"id\": 0, \"scale\": \"big\"}]", 400,
                 "scale", "scale", 2);
    expect_error(&s, "POST", "/lora-adapters", "[{\"scale\": 1}]", 400, "id", "id", 3);
    server_stop(&s);
    free(base);
    free(beam_at_one);
    free(at_one);
    free(at_half);
}

/* A POST /lora-adapters that comes while a completion runs applies after it: the running
 * completion, streamed, whose first chunk had arrived when the scale changed, ends with
 * `quill generate --lora-scale 0.5`'s text, the old scale's. Should the completion finish
 * before the POST arrives, it ran at 0.5 all the same: the check never fails wrongly, but it
 * catches an engine that applies a scale mid-completion only when the POST lands in time
 * (seen: one run in three, for 100 tokens of stories260K). */
Test(serve, lora_scale_change_waits_for_the_running_completion, .timeout = 120)
{
    SHARED_FILE_OR_SKIP(model, STORIES);
    char adapter[512], args[1024];
    snprintf(adapter, sizeof adapter, "%s/adapter.gguf", test_make_tmpdir());
    test_write_adapter(adapter, model, &TEST_ADAPTER);
    snprintf(args, sizeof args, "--prompt 'Once upon a time' --temperature 0 -n 100 "
                                "--ignore-eos --lora %s --lora-scale 0.5", adapter);
    char *at_half = cli_text(model, args);
    Server s;
    snprintf(args, sizeof args, "--lora %s --lora-scale 0.5", adapter);
    server_start(&s, model, args);
    char command[2048], *out;
    snprintf(command, sizeof command,
             "cd %s && printf '%%s' '{\"prompt\": \"Once upon a time\", \"temperature\": 0, "
             "\"max_tokens\": 100, \"ignore_eos\": true, \"stream\": true}' > long.json && "
             "printf '%%s' '[{\"id\": 0, \"scale\": 1}]' > scale.json && "
             "curl -sS -N -H 'Content-Type: application/json' --data-binary @long.json "
             "%s/v1/completions > stream.txt & long=$!; "
             "until grep -q '^data: ' %s/stream.txt 2>/dev/null || ! kill -0 $long 2>/dev/null; do "
             "sleep 0.01; done; "
             "curl -sS -H 'Content-Type: application/json' --data-binary @%s/scale.json "
             "%s/lora-adapters && wait && cat %s/stream.txt",
             s.dir, s.url, s.dir, s.dir, s.url, s.dir);
    cr_assert_eq(test_run_capture(command, &out), 0, "%s", out);
    cr_assert(strstr(out, "{\"success\":true}"), "the POST: %s", out);
    cJSON *events[128];
    bool done;
    int n = sse_events(strstr(out, "}") + 1, events, 128, &done);
    cr_assert(done, "no [DONE]");
    const char *finish;
    char *text = stream_text(events, n, false, &finish);
    cr_expect_str_eq(text, at_half);
    cr_expect_str_eq(finish, "length");
    for (int i = 0; i < n; i++)
        cJSON_Delete(events[i]);
    free(text);
    free(out);
    server_stop(&s);
    free(at_half);
}

/* CORS is off unless --cors names an origin: then every answer allows that origin, and a
 * browser's preflight (OPTIONS) is a 204 that allows POST with an Authorization header. */
Test(serve, cors_only_for_the_origin_named, .timeout = 60)
{
    SHARED_FILE_OR_SKIP(model, STORIES);
    const char *allow = "Access-Control-Allow-Origin: http://example.org";
    Server s;
    server_start(&s, model, "");
    char *out;
    cr_expect_eq(request(&s, "GET", "/health", NULL, "-i", &out), 200);
    cr_expect_null(strstr(out, "Access-Control"), "%s", out);
    free(out);
    cr_expect_eq(request(&s, "OPTIONS", "/v1/completions", NULL, "-i", &out), 405, "%s", out);
    free(out);
    server_stop(&s);

    server_start(&s, model, "--cors http://example.org");
    cr_expect_eq(request(&s, "GET", "/health", NULL, "-i", &out), 200);
    cr_expect_not_null(strstr(out, allow), "%s", out);
    free(out);
    cr_expect_eq(request(&s, "OPTIONS", "/v1/completions", NULL, "-i", &out), 204, "%s", out);
    cr_expect_not_null(strstr(out, allow), "%s", out);
    cr_expect_not_null(strstr(out, "Access-Control-Allow-Methods: GET, POST, OPTIONS"), "%s", out);
    cr_expect_not_null(strstr(out, "Access-Control-Allow-Headers: Authorization, Content-Type"),
                       "%s", out);
    free(out);
    cr_expect_eq(request(&s, "OPTIONS", "/nowhere", NULL, NULL, &out), 404, "%s", out);
    free(out);
    server_stop(&s);
}

/* A client that connects and sends nothing is disconnected after --timeout seconds (the
 * test's own timeout fails it otherwise): it holds no thread or slot for ever. */
Test(serve, silent_client_is_timed_out, .timeout = 60)
{
    SHARED_FILE_OR_SKIP(model, STORIES);
    Server s;
    server_start(&s, model, "--timeout 1");
    char cmd[256], *out;
    const char *port = strrchr(s.url, ':') + 1;
    snprintf(cmd, sizeof cmd, "bash -c 'exec 3<>/dev/tcp/127.0.0.1/%s; cat <&3'", port);
    cr_expect_eq(test_run_capture(cmd, &out), 0, "%s", out);
    free(out);
    cJSON_Delete(request_json(&s, "GET", "/health", NULL, NULL, 200));
    server_stop(&s);
}

/* ---- continuous batching ------------------------------------------------------------- */

/* A whole file as a NUL-terminated string (malloc'd). */
static char *read_text(const char *path)
{
    char *data;
    size_t len;
    Error err;
    cr_assert_eq(file_read_all(path, &data, &len, &err), 0, "%s", err.msg);
    return data;
}

/* Several requests sent at once, each body from its own file, each answer to out[i]
 * (malloc'd JSON text): curl processes started together, so the server has them all in
 * flight. */
static void requests_together(const Server *s, int n, const char *const *bodies, char **out)
{
    char cmd[8192] = "", file[320];
    size_t len = 0;
    for (int i = 0; i < n; i++) {
        snprintf(file, sizeof file, "%s/together%d.json", s->dir, i);
        FILE *f = fopen(file, "wb");
        cr_assert_not_null(f);
        fputs(bodies[i], f);
        fclose(f);
        len += (size_t)snprintf(cmd + len, sizeof cmd - len,
                                "curl -sS -H 'Content-Type: application/json' --data-binary @%s "
                                "'%s/v1/completions' > %s.out & ", file, s->url, file);
        cr_assert_lt(len, sizeof cmd);
    }
    snprintf(cmd + len, sizeof cmd - len, "wait");
    char *log;
    cr_assert_eq(test_run_capture(cmd, &log), 0, "%s", log);
    free(log);
    for (int i = 0; i < n; i++) {
        snprintf(file, sizeof file, "%s/together%d.json.out", s->dir, i);
        out[i] = read_text(file);
    }
}

/* choices[0].text and its logprobs.token_logprobs (count returned) from an answer. */
static int answer_text_logprobs(const char *json, char **text, double *logprobs, int cap)
{
    cJSON *root = cJSON_Parse(json);
    cr_assert_not_null(root, "not JSON: %s", json);
    const char *t = choice_string(root, 0, "text");
    cr_assert_not_null(t, "no text: %s", json);
    *text = strdup(t);
    const cJSON *choice = cJSON_GetArrayItem(cJSON_GetObjectItem(root, "choices"), 0);
    const cJSON *lp = cJSON_GetObjectItem(cJSON_GetObjectItem(choice, "logprobs"),
                                          "token_logprobs");
    int n = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, lp) {
        cr_assert_lt(n, cap);
        logprobs[n++] = x->valuedouble;
    }
    cJSON_Delete(root);
    return n;
}

/* The request alone, then the same request while three others decode beside it (one with a
 * long prompt taken in chunks, --batch 16, so prompt rows share steps with decoding rows):
 * its text and log-probabilities compared, exactly or within `tol`. */
static void batched_equals_alone(const char *model, const char *request_json, double tol)
{
    Server s;
    server_start(&s, model, "--parallel 4 --batch 16");
    char *alone_json;
    cr_assert_eq(request(&s, "POST", "/v1/completions", request_json, NULL, &alone_json), 200,
                 "%s", alone_json);
    const char *bodies[4] = {
        "{\"prompt\": \"The dog\", \"max_tokens\": 30, \"temperature\": 1, \"seed\": 1}",
        "{\"prompt\": \"A big red ball was in the park, and the sun was warm. Tim and Sue "
        "ran to the ball and they laughed and played all day long\", \"max_tokens\": 20, "
        "\"seed\": 2}",
        request_json,
        "{\"prompt\": \"Tim\", \"max_tokens\": 40, \"temperature\": 0.5, \"seed\": 3, "
        "\"n\": 2}",
    };
    char *out[4];
    requests_together(&s, 4, bodies, out);
    char *alone, *batched;
    double lp_alone[64], lp_batched[64];
    int n_alone = answer_text_logprobs(alone_json, &alone, lp_alone, 64);
    int n_batched = answer_text_logprobs(out[2], &batched, lp_batched, 64);
    cr_expect_gt(n_alone, 10, "%s", alone_json);
    cr_expect_str_eq(batched, alone, "%s: a batch changed the text", model);
    cr_assert_eq(n_batched, n_alone);
    for (int i = 0; i < n_alone; i++)
        cr_expect_leq(fabs(lp_batched[i] - lp_alone[i]), tol, "%s: token %d: logprob %.9g "
                      "batched, %.9g alone", model, i, lp_batched[i], lp_alone[i]);
    for (int i = 0; i < 4; i++) {
        cr_expect_null(strstr(out[i], "\"error\""), "request %d: %s", i, out[i]);
        free(out[i]);
    }
    free(alone);
    free(batched);
    free(alone_json);
    server_stop(&s);
}

/* A request gives the same text alone and in a batch. With quantized weights the bits are
 * the same: a step of one row and a step of many multiply each weight row by each
 * activation row with the same block-by-block sums (quant.c's rows and panel kernels).
 * F32 weights are multiplied by another kernel for one row than for several (and by the
 * BLAS from 16), which add the same products in another order: the logits differ in their
 * last bits, so what is guaranteed there is the greedy text and log-probabilities within
 * 1e-4, not every sampled draw (one that falls on a boundary can go the other way). */
Test(serve, batch_gives_the_same_text_as_alone, .timeout = 120)
{
    SHARED_FILE_OR_SKIP(q8, "models/qtest-Q8_0.gguf");
    batched_equals_alone(q8, "{\"prompt\": \"Once upon a time\", \"max_tokens\": 24, "
                             "\"temperature\": 0.9, \"top_k\": 0, \"top_p\": 1, \"min_p\": 0, "
                             "\"seed\": 7, \"logprobs\": 0}", 0.0);
    SHARED_FILE_OR_SKIP(stories, STORIES);
    batched_equals_alone(stories, "{\"prompt\": \"Once upon a time\", \"max_tokens\": 24, "
                                  "\"temperature\": 0, \"logprobs\": 0}", 1e-4);
}

static int descending(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x < y) - (x > y);
}

/* A completion's logprobs: the first generated token's log-probability and its top 5 are
 * llama.cpp's logits at the prompt's last position, put through a log-softmax here. */
Test(serve, logprobs_are_llama_cpp_log_softmax, .timeout = 60)
{
    SHARED_FILE_OR_SKIP(model, STORIES);
    SHARED_FILE_OR_SKIP(ref_path, "models/stories260K.ref.json");
    char *ref_text = read_text(ref_path);
    cJSON *ref = cJSON_Parse(ref_text);
    free(ref_text);
    cr_assert_not_null(ref);
    const cJSON *rows = cJSON_GetObjectItem(ref, "logits");
    const cJSON *last = cJSON_GetObjectItem(cJSON_GetArrayItem(rows, cJSON_GetArraySize(rows) - 1),
                                            "values");
    int n_vocab = cJSON_GetArraySize(last);
    cr_assert_eq(n_vocab, cJSON_GetObjectItem(ref, "n_vocab")->valueint);
    double max = -INFINITY, sum = 0, logprob[512];
    cr_assert_leq(n_vocab, 512);
    for (int i = 0; i < n_vocab; i++)
        max = fmax(max, cJSON_GetArrayItem(last, i)->valuedouble);
    for (int i = 0; i < n_vocab; i++)
        sum += exp(cJSON_GetArrayItem(last, i)->valuedouble - max);
    for (int i = 0; i < n_vocab; i++)
        logprob[i] = cJSON_GetArrayItem(last, i)->valuedouble - max - log(sum);
    int first = cJSON_GetArrayItem(cJSON_GetObjectItem(ref, "greedy_tokens"), 0)->valueint;

    Server s;
    server_start(&s, model, "--cache-type f32"); /* llama.cpp's reference ran with F32 */
    cJSON *answer = request_json(&s, "POST", "/v1/completions", "{\"prompt\": \"Once upon a "
                                 "time\", \"max_tokens\": 3, \"temperature\": 0, \"logprobs\": 5}",
                                 NULL, 200);
    const cJSON *choice = cJSON_GetArrayItem(cJSON_GetObjectItem(answer, "choices"), 0);
    const cJSON *lp = cJSON_GetObjectItem(choice, "logprobs");
    cr_assert_not_null(lp);
    cr_expect_eq(cJSON_GetArraySize(cJSON_GetObjectItem(lp, "tokens")), 3);
    cr_expect_eq(cJSON_GetArraySize(cJSON_GetObjectItem(lp, "text_offset")), 3);
    double got = cJSON_GetArrayItem(cJSON_GetObjectItem(lp, "token_logprobs"), 0)->valuedouble;
    cr_expect_leq(fabs(got - logprob[first]), 1e-3, "logprob %g, llama.cpp's %g", got,
                  logprob[first]);
    /* the top 5, most likely first: llama.cpp's five largest log-probabilities */
    double sorted[512];
    memcpy(sorted, logprob, sizeof(double) * (size_t)n_vocab);
    qsort(sorted, (size_t)n_vocab, sizeof *sorted, descending);
    const cJSON *top = cJSON_GetArrayItem(cJSON_GetObjectItem(lp, "top_logprobs"), 0);
    int compared = 0;
    const cJSON *entry;
    cJSON_ArrayForEach(entry, top) {
        cr_expect_leq(fabs(entry->valuedouble - sorted[compared]), 1e-3, "'%s': %g, llama.cpp's "
                      "number %d is %g", entry->string, entry->valuedouble, compared + 1,
                      sorted[compared]);
        compared++;
    }
    cr_expect_str_eq(cJSON_GetArrayItem(top, 0)->string, ","); /* greedy_text_hex's 2c */
    cr_expect_eq(compared, 5);
    cJSON_Delete(answer);
    cJSON_Delete(ref);
    server_stop(&s);
}

/* A full queue is a 503 with Retry-After, and the server goes on. One slot and a queue of
 * one choice: a long stream holds the slot (its first chunk has come), so a request of two
 * choices would leave two waiting; alone, those two fit (one takes the free slot). A
 * request of more choices than the slots and the queue together could never run: a 400. */
Test(serve, full_queue_is_503_with_retry_after, .timeout = 60)
{
    SHARED_FILE_OR_SKIP(model, STORIES);
    Server s;
    server_start(&s, model, "--parallel 1 --queue 1 --context 4096");
    const char *two = "{\"prompt\": \"Once\", \"max_tokens\": 2, \"n\": 2}";
    cJSON *idle = request_json(&s, "POST", "/v1/completions", two, NULL, 200);
    cr_expect_eq(cJSON_GetArraySize(cJSON_GetObjectItem(idle, "choices")), 2);
    cJSON_Delete(idle);
    char file[320], cmd[2048];
    snprintf(file, sizeof file, "%s/two.json", s.dir);
    FILE *f = fopen(file, "wb");
    cr_assert_not_null(f);
    fputs(two, f);
    fclose(f);
    snprintf(cmd, sizeof cmd,
             "curl -sS -N -H 'Content-Type: application/json' -d '{\"prompt\": \"Once\", "
             "\"max_tokens\": 4000, \"ignore_eos\": true, \"stream\": true}' "
             "'%s/v1/completions' > %s/long.out & long=$!; "
             "for i in $(seq 200); do grep -q '^data: ' %s/long.out && break; sleep 0.05; done; "
             "curl -sS -i -H 'Content-Type: application/json' --data-binary @%s "
             "'%s/v1/completions'; kill $long; wait",
             s.url, s.dir, s.dir, file, s.url);
    char *out;
    test_run_capture(cmd, &out);
    cr_expect_not_null(strstr(out, " 503"), "%s", out);
    cr_expect_not_null(strstr(out, "Retry-After: 1"), "%s", out);
    cr_expect_not_null(strstr(out, "\"unavailable_error\""), "%s", out);
    free(out);
    cJSON *never = request_json(&s, "POST", "/v1/completions",
                                "{\"prompt\": \"Once\", \"n\": 3}", NULL, 400);
    cr_expect_str_eq(string_at(never, "error", "param"), "n");
    cJSON_Delete(never);
    cJSON *ok = request_json(&s, "POST", "/v1/completions", "{\"prompt\": \"Once\"}", NULL, 200);
    cr_expect_not_null(choice_string(ok, 0, "text"));
    cJSON_Delete(ok);
    server_stop(&s);
}

/* beam_size: the best beam is quill generate --beam-size's text, and n asks for the n best
 * (the first of them the same); a search has no logprobs to give (a 400). */
Test(serve, beam_search_follows_the_cli, .timeout = 60)
{
    SHARED_FILE_OR_SKIP(model, STORIES);
    char *expected = cli_text(model, "--prompt 'Once upon a time' --beam-size 4 -n 30");
    cr_assert_gt(strlen(expected), 20);
    Server s;
    server_start(&s, model, "");
    cJSON *one = request_json(&s, "POST", "/v1/completions", "{\"prompt\": \"Once upon a time\", "
                              "\"beam_size\": 4, \"max_tokens\": 30}", NULL, 200);
    cr_expect_str_eq(choice_string(one, 0, "text"), expected);
    cJSON *two = request_json(&s, "POST", "/v1/completions", "{\"prompt\": \"Once upon a time\", "
                              "\"beam_size\": 4, \"max_tokens\": 30, \"n\": 2}", NULL, 200);
    cr_expect_eq(cJSON_GetArraySize(cJSON_GetObjectItem(two, "choices")), 2);
    cr_expect_str_eq(choice_string(two, 0, "text"), expected);
    cr_expect_str_neq(choice_string(two, 1, "text"), expected);
    char finish[16];
    int n;
    char *streamed = stream_request(&s, "/v1/completions", "{\"prompt\": \"Once upon a time\", "
                                    "\"beam_size\": 4, \"max_tokens\": 30, \"stream\": true}",
                                    false, finish, sizeof finish, &n);
    cr_expect_str_eq(streamed, expected);
    cJSON *refused = request_json(&s, "POST", "/v1/completions", "{\"prompt\": \"Once\", "
                                  "\"beam_size\": 2, \"logprobs\": 1}", NULL, 400);
    cr_expect_str_eq(string_at(refused, "error", "param"), "beam_size");
    free(streamed);
    cJSON_Delete(refused);
    cJSON_Delete(two);
    cJSON_Delete(one);
    free(expected);
    server_stop(&s);
}

/* A grammar and llama-server's newer sampler fields follow the command line: each choice
 * of a grammar request is the CLI's text for its seed and is accepted by `quill grammar
 * --check`; Mirostat 2.0 and XTC give the CLI's seeded texts; a grammar with a mistake is
 * a 400 naming "grammar" with its line and column. */
#define SERVE_GRAMMAR "root ::= (\"cat\" | \"dog\" | \"sun\") (\" \" [a-z]+){1,3} \".\""

static char *grammar_request(const char *grammar, int n)
{
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "prompt", "Once upon a time");
    cJSON_AddNumberToObject(r, "temperature", 1);
    cJSON_AddNumberToObject(r, "seed", 5);
    cJSON_AddNumberToObject(r, "max_tokens", 40);
    cJSON_AddNumberToObject(r, "n", n);
    cJSON_AddStringToObject(r, "grammar", grammar);
    char *json = cJSON_PrintUnformatted(r);
    cJSON_Delete(r);
    return json;
}

Test(serve, grammar_and_newer_samplers_follow_the_cli, .timeout = 120)
{
    SHARED_FILE_OR_SKIP(model, STORIES);
    char *texts[3];
    for (int i = 0; i < 3; i++) {
        char args[512];
        snprintf(args, sizeof args, "--prompt 'Once upon a time' --temperature 1 --seed %d "
                 "-n 40 --grammar '%s'", 5 + i, SERVE_GRAMMAR);
        texts[i] = cli_text(model, args);
    }
    char *miro = cli_text(model, "--prompt 'Once upon a time' --temperature 1 --seed 3 -n 20 "
                                 "--mirostat 2 --mirostat-ent 4 --mirostat-lr 0.2");
    char *xtc = cli_text(model, "--prompt 'Once upon a time' --temperature 1 --seed 3 -n 20 "
                                "--xtc-probability 1 --xtc-threshold 0.05 --top-n-sigma 2");
    Server s;
    server_start(&s, model, "");
    char *json = grammar_request(SERVE_GRAMMAR, 3);
    cJSON *g = request_json(&s, "POST", "/v1/completions", json, NULL, 200);
    int compared = 0;
    for (int i = 0; i < 3; i++, compared++) {
        const char *text = choice_string(g, i, "text");
        cr_assert_not_null(text);
        cr_expect_str_eq(text, texts[i], "choice %d", i);
        cr_expect_str_eq(choice_string(g, i, "finish_reason"), "stop");
        char *verdict;
        cr_assert_eq(quill(&verdict, "grammar --grammar '%s' --check '%s'", SERVE_GRAMMAR, text),
                     0);
        cr_expect_str_eq(verdict, "accept\n", "choice %d: '%s'", i, text);
        free(verdict);
    }
    cr_assert_eq(compared, 3);
    cJSON *m = request_json(&s, "POST", "/v1/completions", "{\"prompt\": \"Once upon a time\", "
                            "\"temperature\": 1, \"seed\": 3, \"max_tokens\": 20, \"mirostat\": 2, "
                            "\"mirostat_tau\": 4, \"mirostat_eta\": 0.2}", NULL, 200);
    cr_expect_str_eq(choice_string(m, 0, "text"), miro);
    cJSON *x = request_json(&s, "POST", "/v1/completions", "{\"prompt\": \"Once upon a time\", "
                            "\"temperature\": 1, \"seed\": 3, \"max_tokens\": 20, "
                            "\"xtc_probability\": 1, \"xtc_threshold\": 0.05, \"top_n_sigma\": 2}",
                            NULL, 200);
    cr_expect_str_eq(choice_string(x, 0, "text"), xtc);
    char *bad = grammar_request("root ::= (\"a\" | \"b\"", 1);
    expect_error(&s, "POST", "/v1/completions", bad, 400, "grammar",
                 "grammar: line 1, column 20: expecting ')'", 0);
    expect_error(&s, "POST", "/v1/completions", "{\"prompt\": \"Once\", \"grammar\": 7}", 400,
                 "grammar", "grammar must be a string", 1);
    expect_error(&s, "POST", "/v1/completions", "{\"prompt\": \"Once\", \"mirostat\": 3}", 400,
                 "mirostat", "mirostat", 2);
    expect_error(&s, "POST", "/v1/completions", "{\"prompt\": \"Once\", \"must_include\": "
                 "[\"cat\"], \"grammar\": \"root ::= [a-z]+\"}", 400, "must_include",
                 "must_include and a grammar", 3);
    /* beams under a grammar: quill generate --beam-size --grammar's best text */
    char args[512];
    snprintf(args, sizeof args, "--prompt 'Once upon a time' --beam-size 3 -n 40 --grammar '%s'",
             SERVE_GRAMMAR);
    char *beamed = cli_text(model, args);
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "prompt", "Once upon a time");
    cJSON_AddNumberToObject(r, "beam_size", 3);
    cJSON_AddNumberToObject(r, "max_tokens", 40);
    cJSON_AddStringToObject(r, "grammar", SERVE_GRAMMAR);
    char *beam_json = cJSON_PrintUnformatted(r);
    cJSON *beam = request_json(&s, "POST", "/v1/completions", beam_json, NULL, 200);
    cr_expect_str_eq(choice_string(beam, 0, "text"), beamed);
    cJSON_Delete(beam);
    cJSON_Delete(r);
    free(beam_json);
    free(beamed);
    cJSON_Delete(x);
    cJSON_Delete(m);
    cJSON_Delete(g);
    free(bad);
    free(json);
    free(xtc);
    free(miro);
    for (int i = 0; i < 3; i++)
        free(texts[i]);
    server_stop(&s);
}

/* Classifier-free guidance: "guide" with "guidance_scale", and llama-server's former
 * "cfg_negative_prompt" with "cfg_scale", give quill generate --guide's and
 * --negative-prompt's texts, whole and streamed; choice i of n is seed + i, as the CLI's
 * --seed; a guided choice has no logprobs or beams (a 400 naming the field). */
Test(serve, guidance_follows_the_cli, .timeout = 60)
{
    SHARED_FILE_OR_SKIP(model, STORIES);
    char *guided = cli_text(model, "--prompt 'Once upon a time' --guide 'Lily was very happy. ' "
                                   "--guide-strength 3 --temperature 0 -n 30");
    char *negative = cli_text(model, "--prompt 'Once upon a time' --negative-prompt 'Tom was "
                                     "sad. ' --guide-strength 3 --temperature 0 -n 30");
    char *plain = cli_text(model, "--prompt 'Once upon a time' --temperature 0 -n 30");
    char *seed_8 = cli_text(model, "--prompt 'Once upon a time' --guide 'Lily was very happy. ' "
                                   "--seed 8 -n 20");
    cr_assert_str_neq(guided, plain, "the guide changes the text");
    cr_assert_str_neq(negative, plain, "the negative prompt changes the text");
    Server s;
    server_start(&s, model, "");
    cJSON *one = request_json(&s, "POST", "/v1/completions", "{\"prompt\": \"Once upon a time\", "
                              "\"guide\": \"Lily was very happy. \", \"guidance_scale\": 3, "
                              "\"temperature\": 0, \"max_tokens\": 30}", NULL, 200);
    cr_expect_str_eq(choice_string(one, 0, "text"), guided);
    cJSON *cfg = request_json(&s, "POST", "/v1/completions", "{\"prompt\": \"Once upon a time\", "
                              "\"cfg_negative_prompt\": \"Tom was sad. \", \"cfg_scale\": 3, "
                              "\"temperature\": 0, \"max_tokens\": 30}", NULL, 200);
    cr_expect_str_eq(choice_string(cfg, 0, "text"), negative);
    cJSON *two = request_json(&s, "POST", "/v1/completions", "{\"prompt\": \"Once upon a time\", "
                              "\"guide\": \"Lily was very happy. \", \"seed\": 7, \"n\": 2, "
                              "\"max_tokens\": 20}", NULL, 200);
    cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(two, "choices")), 2);
    cr_expect_str_eq(choice_string(two, 1, "text"), seed_8);
    char finish[16];
    int n;
    char *streamed = stream_request(&s, "/v1/completions", "{\"prompt\": \"Once upon a time\", "
                                    "\"guide\": \"Lily was very happy. \", "
                                    "\"guidance_scale\": 3, \"temperature\": 0, "
                                    "\"max_tokens\": 30, \"stream\": true}",
                                    false, finish, sizeof finish, &n);
    cr_expect_str_eq(streamed, guided);
    cr_expect_gt(n, 1, "a chunk per token");
    const char *refused[][2] = {
        {"{\"prompt\": \"Once\", \"guide\": \"A. \", \"logprobs\": 1}", "guide"},
        {"{\"prompt\": \"Once\", \"negative_prompt\": \"B. \", \"beam_size\": 2}",
         "negative_prompt"},
        {"{\"prompt\": \"Once\", \"guide\": \"A. \", \"guidance_scale\": \"big\"}",
         "guidance_scale"},
    };
    for (int i = 0; i < 3; i++) {
        cJSON *no = request_json(&s, "POST", "/v1/completions", refused[i][0], NULL, 400);
        cr_expect_str_eq(string_at(no, "error", "param"), refused[i][1]);
        cJSON_Delete(no);
    }
    free(streamed);
    cJSON_Delete(two);
    cJSON_Delete(cfg);
    cJSON_Delete(one);
    free(seed_8);
    free(plain);
    free(negative);
    free(guided);
    server_stop(&s);
}

/* JSON output: OpenAI's response_format json_schema gives, for each of 5 choices, JSON that
 * python3-jsonschema finds valid under the schema, choice 0 the CLI's --json-schema text
 * for its seed; json_object gives JSON; llama-server's json_schema field is read too; a
 * schema quill cannot convert, or one beside a grammar, is a 400 naming the field. */
#define SERVE_SCHEMA "{\"type\": \"object\", \"properties\": {\"name\": {\"type\": \"string\", " \
                     "\"maxLength\": 12}, \"age\": {\"type\": \"integer\", \"minimum\": 1, "    \
                     "\"maximum\": 99}}, \"required\": [\"name\", \"age\"]}"

/* The answer's choices as a JSON array of [schema, text] pairs for the validator. */
static char *schema_pairs(const cJSON *answer, const char *schema, int *n)
{
    cJSON *pairs = cJSON_CreateArray();
    const cJSON *choice;
    *n = 0;
    cJSON_ArrayForEach(choice, cJSON_GetObjectItem(answer, "choices")) {
        cJSON *pair = cJSON_CreateArray();
        cJSON_AddItemToArray(pair, cJSON_CreateString(schema));
        cJSON_AddItemToArray(pair, cJSON_CreateString(
                                       cJSON_GetObjectItem(choice, "text")->valuestring));
        cJSON_AddItemToArray(pairs, pair);
        (*n)++;
    }
    char *json = cJSON_PrintUnformatted(pairs);
    cJSON_Delete(pairs);
    return json;
}

Test(serve, json_schema_output_is_valid_json, .timeout = 180)
{
    SHARED_FILE_OR_SKIP(model, STORIES);
    test_json_validator_or_skip();
    char args[512];
    snprintf(args, sizeof args, "--prompt 'Once upon a time' --seed 11 --context 1024 -n 400 "
             "--json-schema '%s'", SERVE_SCHEMA);
    char *cli = cli_text(model, args);
    Server s;
    server_start(&s, model, "--context 1024");
    char body[1024];
    snprintf(body, sizeof body, "{\"prompt\": \"Once upon a time\", \"seed\": 11, \"n\": 5, "
             "\"max_tokens\": 400, \"response_format\": {\"type\": \"json_schema\", "
             "\"json_schema\": {\"name\": \"person\", \"schema\": %s}}}", SERVE_SCHEMA);
    cJSON *a = request_json(&s, "POST", "/v1/completions", body, NULL, 200);
    cr_expect_str_eq(choice_string(a, 0, "text"), cli);
    int n;
    char *pairs = schema_pairs(a, SERVE_SCHEMA, &n);
    cr_assert_eq(n, 5);
    for (int i = 0; i < n; i++)
        cr_expect_str_eq(choice_string(a, i, "finish_reason"), "stop", "choice %d", i);
    char *verdicts = test_json_validate_pairs(test_write_file(s.dir, "pairs.json", pairs));
    cr_expect_str_eq(verdicts, "valid\nvalid\nvalid\nvalid\nvalid\n");

    snprintf(body, sizeof body, "{\"prompt\": \"Once upon a time\", \"seed\": 11, \"n\": 2, "
             "\"max_tokens\": 400, \"json_schema\": %s}", SERVE_SCHEMA);
    cJSON *b = request_json(&s, "POST", "/v1/completions", body, NULL, 200);
    cr_expect_str_eq(choice_string(b, 0, "text"), cli, "llama-server's json_schema field");
    cJSON *any = request_json(&s, "POST", "/v1/completions", "{\"prompt\": \"Once upon a time\", "
                              "\"seed\": 3, \"max_tokens\": 400, \"response_format\": "
                              "{\"type\": \"json_object\"}}", NULL, 200);
    char *any_pairs = schema_pairs(any, "{}", &n);
    char *any_verdict = test_json_validate_pairs(test_write_file(s.dir, "any.json", any_pairs));
    cr_expect_str_eq(any_verdict, "valid\n", "%s", choice_string(any, 0, "text"));

    expect_error(&s, "POST", "/v1/completions", "{\"prompt\": \"Once\", \"response_format\": "
                 "{\"type\": \"json_schema\", \"json_schema\": {\"schema\": {\"not\": {}}}}}",
                 400, "response_format", "keyword 'not' is not supported", 0);
    expect_error(&s, "POST", "/v1/completions", "{\"prompt\": \"Once\", \"response_format\": "
                 "{\"type\": \"xml\"}}", 400, "response_format", "response_format must be", 1);
    expect_error(&s, "POST", "/v1/completions", "{\"prompt\": \"Once\", \"grammar\": "
                 "\"root ::= [a-z]+\", \"json_schema\": {}}", 400, "json_schema",
                 "grammar and json_schema both given", 2);
    free(any_verdict);
    free(any_pairs);
    free(verdicts);
    free(pairs);
    free(cli);
    cJSON_Delete(any);
    cJSON_Delete(b);
    cJSON_Delete(a);
    server_stop(&s);
}

/* choices[i].missed_words, joined by commas ("" for an empty array; NULL when absent). */
static char *missed_words(const cJSON *root, int i)
{
    const cJSON *choice = cJSON_GetArrayItem(cJSON_GetObjectItem(root, "choices"), i);
    const cJSON *words = cJSON_GetObjectItemCaseSensitive(choice, "missed_words"), *w;
    if (!cJSON_IsArray(words))
        return NULL;
    char *joined = calloc(1, 1024);
    cJSON_ArrayForEach(w, words)
        snprintf(joined + strlen(joined), 1024 - strlen(joined), "%s%s", *joined ? "," : "",
                 cJSON_IsString(w) ? w->valuestring : "(not a string)");
    return joined;
}

/* must_include: a search of quill generate --must-include's, its text byte for byte, with
 * the words the text lacks in missed_words (none; or the phrase that cannot fit in 5
 * tokens); an empty word is a 400. */
Test(serve, must_include_follows_the_cli, .timeout = 60)
{
    SHARED_FILE_OR_SKIP(model, STORIES);
    char *expected = cli_text(model, "--prompt 'Once upon a time' -n 60 "
                                     "--must-include dragon,castle,knight");
    Server s;
    server_start(&s, model, "");
    cJSON *all = request_json(&s, "POST", "/v1/completions", "{\"prompt\": \"Once upon a time\", "
                              "\"max_tokens\": 60, \"must_include\": [\"dragon\", \"castle\", "
                              "\"knight\"]}", NULL, 200);
    cr_expect_str_eq(choice_string(all, 0, "text"), expected);
    char *none = missed_words(all, 0);
    cr_expect_str_eq(none, "");
    cJSON *short_one = request_json(&s, "POST", "/v1/completions", "{\"prompt\": \"Once upon a "
                                    "time\", \"max_tokens\": 5, \"must_include\": [\"dragon\", "
                                    "\"the old wizard of the northern mountains\"]}", NULL, 200);
    char *lacks = missed_words(short_one, 0);
    cr_expect_str_eq(lacks, "the old wizard of the northern mountains");
    expect_error(&s, "POST", "/v1/completions", "{\"prompt\": \"Once\", \"must_include\": "
                 "[\"\"]}", 400, "must_include", "must not be empty", 0);
    free(none);
    free(lacks);
    cJSON_Delete(short_one);
    cJSON_Delete(all);
    free(expected);
    server_stop(&s);
}

/* One number of /metrics' text: the sample named `name` (the line "name value"). */
static double metric(const Server *s, const char *name)
{
    char *body;
    cr_assert_eq(request(s, "GET", "/metrics", NULL, NULL, &body), 200, "%s", body);
    char needle[96];
    snprintf(needle, sizeof needle, "\n%s ", name);
    const char *at = strstr(body, needle);
    cr_assert_not_null(at, "no %s in %s", name, body);
    double value = strtod(at + strlen(needle), NULL);
    free(body);
    return value;
}

/* A client that goes away mid-stream frees its slot: a stream of 4000 tokens is cut after
 * its first chunk, and the slot is idle again long before 4000 tokens could have been
 * generated (the counters say how many were). */
Test(serve, client_gone_frees_its_slot, .timeout = 60)
{
    SHARED_FILE_OR_SKIP(model, STORIES);
    Server s;
    server_start(&s, model, "--parallel 1 --context 4096");
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "curl -sS -N -H 'Content-Type: application/json' -d '{\"prompt\": \"Once\", "
             "\"max_tokens\": 4000, \"ignore_eos\": true, \"stream\": true}' "
             "'%s/v1/completions' 2>/dev/null | head -c 300 > /dev/null", s.url);
    char *out;
    test_run_capture(cmd, &out); /* head exits after its bytes: curl's next write fails */
    free(out);
    int polls = 0;
    while (metric(&s, "quill_slots_active") != 0 && polls < 200) {
        nanosleep(&(struct timespec){.tv_nsec = 20000000}, NULL);
        polls++;
    }
    cr_expect_eq(metric(&s, "quill_slots_active"), 0, "the slot is still busy");
    double generated = metric(&s, "quill_tokens_generated_total");
    cr_expect_lt(generated, 4000, "the stream ran to its end: %g tokens", generated);
    cr_expect_gt(generated, 0);
    cr_expect_eq(metric(&s, "quill_requests_total"), 1);
    cJSON *ok = request_json(&s, "POST", "/v1/completions", "{\"prompt\": \"Once\"}", NULL, 200);
    cJSON_Delete(ok);
    /* max_tokens 0 generates nothing: with echo, the prompt alone */
    cJSON *none = request_json(&s, "POST", "/v1/completions", "{\"prompt\": \"Once\", "
                               "\"max_tokens\": 0, \"echo\": true}", NULL, 200);
    cr_expect_str_eq(choice_string(none, 0, "text"), "Once");
    cr_expect_str_eq(choice_string(none, 0, "finish_reason"), "length");
    cr_expect_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(none, "usage"),
                                     "completion_tokens")->valueint, 0);
    cJSON_Delete(none);
    server_stop(&s);
}

/* A 10 MiB body against the default limit of 1 MiB: a 413 once the limit is passed (the
 * rest is read and dropped, so the client gets its answer), and the server goes on. */
Test(serve, ten_mib_body_is_413, .timeout = 60)
{
    SHARED_FILE_OR_SKIP(model, STORIES);
    Server s;
    server_start(&s, model, "");
    size_t n = 10u << 20;
    char *big = malloc(n + 1);
    cr_assert_not_null(big);
    memset(big, ' ', n);
    memcpy(big, "{\"prompt\": \"", 12);
    big[n - 2] = '"';
    big[n - 1] = '}';
    big[n] = '\0';
    char *body;
    int status = request(&s, "POST", "/v1/completions", big, NULL, &body);
    cr_expect_eq(status, 413, "%s", body);
    cr_expect_not_null(strstr(body, "over the limit of 1048576 bytes"), "%s", body);
    free(body);
    free(big);
    cJSON *ok = request_json(&s, "POST", "/v1/completions", "{\"prompt\": \"Once\"}", NULL, 200);
    cJSON_Delete(ok);
    server_stop(&s);
}

/* A slot keeps its last text: a prompt that starts the same way runs only what follows
 * (at least its last token, for the logits), and the text is what a fresh slot gives. */
Test(serve, prompt_cache_reuses_a_slot, .timeout = 60)
{
    SHARED_FILE_OR_SKIP(model, STORIES);
    Server s;
    server_start(&s, model, "--parallel 1");
    const char *req = "{\"prompt\": \"Once upon a time\", \"temperature\": 0, \"max_tokens\": 20}";
    cJSON *first = request_json(&s, "POST", "/v1/completions", req, NULL, 200);
    cr_expect_eq(metric(&s, "quill_prompt_tokens_cached_total"), 0);
    cJSON *again = request_json(&s, "POST", "/v1/completions", req, NULL, 200);
    cr_expect_str_eq(choice_string(again, 0, "text"), choice_string(first, 0, "text"));
    /* bos + 4 tokens: 4 found, the last run again */
    cr_expect_eq(metric(&s, "quill_prompt_tokens_cached_total"), 4);
    cr_expect_eq(metric(&s, "quill_prompt_tokens_total"), 10);
    /* llama-server's "cache_prompt": false runs it all again */
    cJSON *uncached = request_json(&s, "POST", "/v1/completions", "{\"prompt\": \"Once upon a "
                                   "time\", \"temperature\": 0, \"max_tokens\": 20, "
                                   "\"cache_prompt\": false}", NULL, 200);
    cr_expect_str_eq(choice_string(uncached, 0, "text"), choice_string(first, 0, "text"));
    cr_expect_eq(metric(&s, "quill_prompt_tokens_cached_total"), 4);
    cJSON_Delete(uncached);
    /* the prompt and the text so far, continued: most of it is in the cache (the text's
     * tokens as the model chose them may differ from the text's tokenization at the end) */
    const char *text = choice_string(first, 0, "text");
    cr_assert_null(strchr(text, '\''), "%s", text); /* it goes into a shell command below */
    char longer[512], cli_args[512];
    snprintf(longer, sizeof longer, "{\"prompt\": \"Once upon a time%s\", \"temperature\": 0, "
             "\"max_tokens\": 10}", text);
    snprintf(cli_args, sizeof cli_args, "--prompt 'Once upon a time%s' --temperature 0 -n 10",
             text);
    char *expected = cli_text(model, cli_args);
    cJSON *more = request_json(&s, "POST", "/v1/completions", longer, NULL, 200);
    double cached = metric(&s, "quill_prompt_tokens_cached_total") - 4;
    cr_expect_geq(cached, 15, "only %g of the continued prompt's tokens were cached", cached);
    cr_expect_str_eq(choice_string(more, 0, "text"), expected);
    free(expected);
    cJSON_Delete(more);
    cJSON_Delete(again);
    cJSON_Delete(first);
    server_stop(&s);
}

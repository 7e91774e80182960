/* Chat JSONL -> token stream and loss mask (chat_data.h). */
/* getline */
#define _DEFAULT_SOURCE

#include "chat_data.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool chat_data_path(const char *path)
{
    size_t n = strlen(path);
    return n >= 6 && strcmp(path + n - 6, ".jsonl") == 0;
}

static int tokens_reserve(ChatTokens *t, size_t extra, Error *err)
{
    if (t->n + extra <= t->cap)
        return 0;
    size_t cap = t->cap ? t->cap : 4096;
    while (cap < t->n + extra)
        cap *= 2;
    int *ids = realloc(t->ids, cap * sizeof *ids);
    if (ids)
        t->ids = ids;
    uint8_t *counted = realloc(t->counted, cap);
    if (counted)
        t->counted = counted;
    if (!ids || !counted)
        return error_set(err, "out of memory for %zu tokens of chat data", cap);
    t->cap = cap;
    return 0;
}

/* Tokenizes text[from, to) onto out, every token marked `counted`. The first piece of a
 * conversation starts a text (bos, SPM's space prefix); the others continue it. */
static int piece_append(ChatTokens *out, const Tokenizer *tok, ChatFamily family,
                        const char *text, size_t from, size_t to, bool first, bool counted,
                        Error *err)
{
    EncodeOptions opt = {.add_bos = first && tok->add_bos && !chat_template_writes_bos(family),
                         .parse_special = true, .mid_text = !first};
    int *ids;
    size_t n;
    if (tokenizer_encode_with(tok, text + from, to - from, opt, &ids, &n, err) != 0)
        return -1;
    int status = tokens_reserve(out, n, err);
    if (status == 0) {
        memcpy(out->ids + out->n, ids, n * sizeof *ids);
        memset(out->counted + out->n, counted, n);
        out->n += n;
    }
    free(ids);
    return status;
}

/* The length of msgs[0..n) formatted (with the generation prompt after it when
 * add_generation_prompt), which must be a start of `whole`: the template writes a
 * conversation turn by turn. */
static int prefix_length(ChatFamily family, const ChatMessage *msgs, int n,
                         bool add_generation_prompt, const char *whole, size_t *len, Error *err)
{
    char *text;
    if (chat_format(family, msgs, n, add_generation_prompt, &text, err) != 0)
        return -1;
    *len = strlen(text);
    bool prefix = strncmp(text, whole, *len) == 0;
    free(text);
    if (!prefix)
        return error_set(err, "the %s template does not write message %d as a continuation "
                              "of the messages before it", chat_family_name(family), n + 1);
    return 0;
}

int chat_tokens_append(ChatTokens *out, ChatFamily family, const Tokenizer *tok,
                       const ChatMessage *msgs, int n, bool loss_on_all, Error *err)
{
    char *whole;
    if (chat_format(family, msgs, n, false, &whole, err) != 0)
        return -1;
    /* pieces alternate: [done, prompt_end) not counted, [prompt_end, reply_end) counted */
    size_t done = 0, prompt_end, reply_end;
    int status = 0;
    for (int k = 0; k < n && status == 0; k++) {
        if (msgs[k].role != CHAT_ROLE_ASSISTANT)
            continue;
        if (prefix_length(family, msgs, k, true, whole, &prompt_end, err) != 0 ||
            prefix_length(family, msgs, k + 1, false, whole, &reply_end, err) != 0 ||
            piece_append(out, tok, family, whole, done, prompt_end, done == 0, loss_on_all,
                         err) != 0 ||
            piece_append(out, tok, family, whole, prompt_end, reply_end, false, true, err) != 0)
            status = -1;
        done = reply_end;
    }
    size_t len = strlen(whole);
    if (status == 0 && (done < len || done == 0))
        status = piece_append(out, tok, family, whole, done, len, done == 0, loss_on_all, err);
    free(whole);
    return status;
}

/* The messages of one parsed line into msgs (pointing into json), or an error saying what
 * is missing. */
static int line_messages(const cJSON *json, ChatMessage **msgs, int *n, Error *err)
{
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(json, "messages");
    if (!cJSON_IsArray(list) || cJSON_GetArraySize(list) == 0)
        return error_set(err, "expected {\"messages\": [{\"role\": ..., \"content\": ...}, ...]}");
    *n = cJSON_GetArraySize(list);
    *msgs = malloc((size_t)*n * sizeof **msgs);
    if (!*msgs)
        return error_set(err, "out of memory");
    static const char *const roles[] = {"system", "user", "assistant"};
    int i = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, list) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
        int r = 0;
        while (cJSON_IsString(role) && r < 3 && strcmp(role->valuestring, roles[r]) != 0)
            r++;
        if (!cJSON_IsString(role) || r == 3)
            return error_set(err, "messages[%d].role must be \"system\", \"user\" or "
                                  "\"assistant\"", i);
        if (!cJSON_IsString(content))
            return error_set(err, "messages[%d].content must be a string", i);
        (*msgs)[i++] = (ChatMessage){(ChatRole)r, content->valuestring};
    }
    return 0;
}

static int line_append(ChatTokens *out, const char *line, ChatFamily family,
                       const Tokenizer *tok, bool loss_on_all, Error *err)
{
    cJSON *json = cJSON_Parse(line);
    if (!json)
        return error_set(err, "not valid JSON");
    ChatMessage *msgs = NULL;
    int n = 0;
    int status = line_messages(json, &msgs, &n, err);
    if (status == 0)
        status = chat_tokens_append(out, family, tok, msgs, n, loss_on_all, err);
    free(msgs);
    cJSON_Delete(json);
    return status;
}

static bool blank(const char *s)
{
    while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')
        s++;
    return *s == '\0';
}

int chat_tokens_load(ChatTokens *out, const char *path, ChatFamily family, const Tokenizer *tok,
                     bool loss_on_all, Error *err)
{
    FILE *fp = fopen(path, "r");
    if (!fp)
        return error_set(err, "%s: %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    int status = 0;
    for (long number = 1; status == 0 && getline(&line, &cap, fp) >= 0; number++)
        if (!blank(line) && line_append(out, line, family, tok, loss_on_all, err) != 0)
            status = error_prefix(err, "%s: line %ld", path, number);
    free(line);
    fclose(fp);
    return status;
}

void chat_tokens_free(ChatTokens *t)
{
    if (!t)
        return;
    free(t->ids);
    free(t->counted);
    memset(t, 0, sizeof *t);
}

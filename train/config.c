#include "config.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "fileio.h"

typedef enum {
    CONFIG_TYPE_Int,
    CONFIG_TYPE_Float,
    CONFIG_TYPE_Bool,
    CONFIG_TYPE_Choice,
    CONFIG_TYPE_Paths,
} ConfigType;

typedef struct {
    const char *name;
    ConfigType type;
    size_t offset; /* of the field in TrainConfig */
    const char *def;
    double min, max;
    const char *help;
    bool fixed; /* cannot change once a run has started */
} ConfigKey;

static const ConfigKey KEYS[] = {
#define X(type, name, def, min, max, help)                                                     \
    {#name, CONFIG_TYPE_##type, offsetof(TrainConfig, name), def, min, max, help, true},
    CONFIG_FIXED_KEYS(X)
#undef X
#define X(type, name, def, min, max, help)                                                     \
    {#name, CONFIG_TYPE_##type, offsetof(TrainConfig, name), def, min, max, help, false},
    CONFIG_RUN_KEYS(X)
#undef X
};
enum { N_KEYS = sizeof KEYS / sizeof *KEYS };
_Static_assert((int)N_KEYS <= (int)CONFIG_N_KEYS, "CONFIG_N_KEYS must cover every key");

/* The allowed values of the Choice keys (NULL-terminated). */
static const char *const TOKENIZER_CHOICES[] = {"char", "bpe", "base", NULL};
static const char *const OPTIMIZER_CHOICES[] = {"adamw", "sgd", NULL};

static const char *const *key_choices(const ConfigKey *k)
{
    if (strcmp(k->name, "tokenizer") == 0)
        return TOKENIZER_CHOICES;
    return strcmp(k->name, "optimizer") == 0 ? OPTIMIZER_CHOICES : NULL;
}

static void *field(TrainConfig *c, const ConfigKey *k)
{
    return (char *)c + k->offset;
}

static const void *field_const(const TrainConfig *c, const ConfigKey *k)
{
    return (const char *)c + k->offset;
}

static const ConfigKey *key_find(const char *name)
{
    for (int i = 0; i < N_KEYS; i++)
        if (strcmp(KEYS[i].name, name) == 0)
            return &KEYS[i];
    return NULL;
}

/* Edit distance, for "did you mean" suggestions. */
static int edit_distance(const char *a, const char *b)
{
    int la = (int)strlen(a), lb = (int)strlen(b);
    if (la > 63 || lb > 63)
        return 99;
    int row[64];
    for (int j = 0; j <= lb; j++)
        row[j] = j;
    for (int i = 1; i <= la; i++) {
        int diagonal = row[0];
        row[0] = i;
        for (int j = 1; j <= lb; j++) {
            int above = row[j];
            int substitute = diagonal + (a[i - 1] != b[j - 1]);
            int best = above + 1 < row[j - 1] + 1 ? above + 1 : row[j - 1] + 1;
            row[j] = best < substitute ? best : substitute;
            diagonal = above;
        }
    }
    return row[lb];
}

static int error_unknown_key(Error *err, const char *origin, const char *name)
{
    char quoted[64];
    const char *best = NULL;
    int best_distance = 3; /* only suggest near misses */
    for (int i = 0; i < N_KEYS; i++) {
        int d = edit_distance(name, KEYS[i].name);
        if (d < best_distance) {
            best_distance = d;
            best = KEYS[i].name;
        }
    }
    if (best)
        return error_set(err, "%s: unknown key '%s' (did you mean '%s'?)", origin,
                         error_quote(quoted, sizeof quoted, name, strlen(name)), best);
    return error_set(err, "%s: unknown key '%s'", origin,
                     error_quote(quoted, sizeof quoted, name, strlen(name)));
}

const char *config_flag_spelling(char flag_name[32], const char *key)
{
    snprintf(flag_name, 32, "%s", key);
    for (char *p = flag_name; *p; p++)
        if (*p == '_')
            *p = '-';
    return flag_name;
}

/* The command-line flag of a key: its name with dashes, its type and c's field as the
 * destination. flag_name has room for the longest name. */
static Flag key_flag(TrainConfig *c, const ConfigKey *k, char flag_name[32])
{
    static const FlagType types[] = {
        [CONFIG_TYPE_Int] = FLAG_INT,       [CONFIG_TYPE_Float] = FLAG_FLOAT,
        [CONFIG_TYPE_Bool] = FLAG_SWITCH,   [CONFIG_TYPE_Choice] = FLAG_CHOICE,
        [CONFIG_TYPE_Paths] = FLAG_LIST,
    };
    config_flag_spelling(flag_name, k->name);
    return (Flag){.name = flag_name, .type = types[k->type], .dest = field(c, k), .min = k->min,
                  .max = k->max, .help = k->help, .choices = key_choices(k)};
}

/* Sets a key from text, the way its flag does; `what` names the source in messages ("--lr",
 * "x.json: key 'lr'"). A Paths key is replaced by the one path (or emptied by ""). */
static int key_set_text(TrainConfig *c, const ConfigKey *k, const char *text, const char *what,
                        Error *err)
{
    char flag_name[32];
    Flag f = key_flag(c, k, flag_name);
    if (k->type == CONFIG_TYPE_Bool && *text == '\0')
        return error_set(err, "%s expects true or false", what);
    if (k->type != CONFIG_TYPE_Paths)
        return cli_flag_set(&f, text, what, err);
    string_list_clear(f.dest);
    return *text ? cli_flag_set(&f, text, what, err) : 0;
}

int config_flags(TrainConfig *c, Flag *flags)
{
    static char names[N_KEYS][32];
    for (int i = 0; i < N_KEYS; i++)
        flags[i] = key_flag(c, &KEYS[i], names[i]);
    return N_KEYS;
}

int config_set_key(TrainConfig *c, const char *name, const char *text, Error *err)
{
    const ConfigKey *k = key_find(name);
    if (!k)
        return error_unknown_key(err, "config", name);
    char what[64];
    snprintf(what, sizeof what, "key '%s'", name);
    return key_set_text(c, k, text, what, err);
}

void config_init(TrainConfig *c)
{
    memset(c, 0, sizeof *c);
    for (int i = 0; i < N_KEYS; i++)
        key_set_text(c, &KEYS[i], KEYS[i].def, KEYS[i].name, NULL); /* defaults are valid */
}

void config_free(TrainConfig *c)
{
    if (c)
        string_list_clear(&c->data);
}

int config_copy(TrainConfig *dst, const TrainConfig *src, Error *err)
{
    *dst = *src;
    return string_list_copy(&dst->data, &src->data, err);
}

/* ---- JSON --------------------------------------------------------------------------- */

/* Converts a JSON value to the text form key_set_text parses, checking its JSON type. */
static int json_value_text(const ConfigKey *k, const cJSON *item, const char *what, char *text,
                           size_t cap, Error *err)
{
    switch (k->type) {
    case CONFIG_TYPE_Int:
    case CONFIG_TYPE_Float:
        if (!cJSON_IsNumber(item))
            return error_set(err, "%s expects a number", what);
        if (k->type == CONFIG_TYPE_Int && item->valuedouble != floor(item->valuedouble))
            return error_set(err, "%s expects an integer, got %g", what, item->valuedouble);
        snprintf(text, cap, k->type == CONFIG_TYPE_Int ? "%.0f" : "%.17g", item->valuedouble);
        return 0;
    case CONFIG_TYPE_Bool:
        if (!cJSON_IsBool(item))
            return error_set(err, "%s expects true or false", what);
        snprintf(text, cap, "%s", cJSON_IsTrue(item) ? "true" : "false");
        return 0;
    case CONFIG_TYPE_Choice:
    case CONFIG_TYPE_Paths:
        if (!cJSON_IsString(item))
            return error_set(err, "%s expects a string", what);
        snprintf(text, cap, "%s", item->valuestring);
        return 0;
    }
    return error_set(err, "%s: unknown key type", what);
}

/* data: a string or an array of strings. */
static int json_apply_paths(TrainConfig *c, const ConfigKey *k, const cJSON *item,
                            const char *what, Error *err)
{
    if (cJSON_IsString(item))
        return key_set_text(c, k, item->valuestring, what, err);
    if (!cJSON_IsArray(item))
        return error_set(err, "%s expects a file name or a list of them", what);
    ConfigPaths *paths = field(c, k);
    string_list_clear(paths);
    const cJSON *entry;
    cJSON_ArrayForEach(entry, item)
    {
        if (!cJSON_IsString(entry))
            return error_set(err, "%s expects a list of file names", what);
        if (string_list_append(paths, entry->valuestring, err) != 0)
            return -1;
    }
    return 0;
}

static bool json_is_space(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r';
}

/* Parses a text that must be exactly one JSON value: cJSON stops at the end of the first
 * value (and a C string would stop at a NUL byte), so both are checked here, and the
 * message quotes the text where it went wrong, escaped. */
static int json_parse_whole(const char *json, size_t len, const char *origin, cJSON **root,
                            Error *err)
{
    char quoted[48];
    const char *nul = memchr(json, '\0', len);
    *root = NULL;
    if (nul)
        return error_set(err, "%s: a NUL byte at offset %zu: not a JSON text", origin,
                         (size_t)(nul - json));
    const char *end = NULL;
    cJSON *parsed = cJSON_ParseWithLengthOpts(json, len, &end, false);
    size_t at = end && end >= json ? (size_t)(end - json) : 0;
    if (!parsed)
        return error_set(err, "%s: not valid JSON at offset %zu (near '%s')", origin, at,
                         error_quote(quoted, sizeof quoted, json + at, len - at));
    while (at < len && json_is_space(json[at]))
        at++;
    if (at < len) {
        cJSON_Delete(parsed);
        return error_set(err, "%s: unexpected text after the JSON object at offset %zu ('%s')",
                         origin, at, error_quote(quoted, sizeof quoted, json + at, len - at));
    }
    *root = parsed;
    return 0;
}

/* Applies one "key": value pair; seen[] catches a key given twice, which JSON parsers
 * disagree about (the last one wins in cJSON) and is almost always a mistake. */
static int json_apply_item(TrainConfig *c, const cJSON *item, const char *origin, bool *seen,
                           Error *err)
{
    const ConfigKey *k = key_find(item->string);
    if (!k)
        return error_unknown_key(err, origin, item->string);
    if (seen[k - KEYS])
        return error_set(err, "%s: key '%s' is given twice", origin, k->name);
    seen[k - KEYS] = true;
    char what[300], text[4096];
    snprintf(what, sizeof what, "%s: key '%s'", origin, k->name);
    if (k->type == CONFIG_TYPE_Paths)
        return json_apply_paths(c, k, item, what, err);
    if (json_value_text(k, item, what, text, sizeof text, err) != 0)
        return -1;
    return key_set_text(c, k, text, what, err);
}

int config_apply_json(TrainConfig *c, const char *json, size_t len, const char *origin,
                      Error *err)
{
    cJSON *root;
    if (json_parse_whole(json, len, origin, &root, err) != 0)
        return -1;
    int status = 0;
    bool seen[N_KEYS] = {false};
    if (!cJSON_IsObject(root))
        status = error_set(err, "%s: expected a JSON object of keys", origin);
    const cJSON *item;
    cJSON_ArrayForEach(item, root)
    {
        if (status == 0)
            status = json_apply_item(c, item, origin, seen, err);
    }
    cJSON_Delete(root);
    return status;
}

int config_read_json_numbers(const char *json, size_t len, const char *origin,
                             const char *const *names, int n, double *values, bool *present,
                             Error *err)
{
    cJSON *root;
    if (json_parse_whole(json, len, origin, &root, err) != 0)
        return -1;
    int status = cJSON_IsObject(root) ? 0 : error_set(err, "%s: expected a JSON object", origin);
    for (int i = 0; i < n; i++) {
        const cJSON *item = status == 0 ? cJSON_GetObjectItemCaseSensitive(root, names[i]) : NULL;
        present[i] = item != NULL;
        if (item && !cJSON_IsNumber(item))
            status = error_set(err, "%s: key '%s' expects a number", origin, names[i]);
        values[i] = item && status == 0 ? item->valuedouble : 0.0;
    }
    cJSON_Delete(root);
    return status;
}

int config_apply_file(TrainConfig *c, const char *path, Error *err)
{
    char *text;
    size_t len;
    if (file_read_all(path, &text, &len, err) != 0)
        return -1;
    int status = config_apply_json(c, text, len, path, err);
    free(text);
    return status;
}

/* The shortest decimal that reads back as the same float, so config.json shows 0.001,
 * not 0.0010000000474974513. */
static double float_for_json(float f)
{
    char text[32];
    for (int digits = 6; digits <= 9; digits++) {
        snprintf(text, sizeof text, "%.*g", digits, f);
        if ((float)strtod(text, NULL) == f)
            break;
    }
    return strtod(text, NULL);
}

char *config_to_json(const TrainConfig *c)
{
    cJSON *root = cJSON_CreateObject();
    for (int i = 0; root && i < N_KEYS; i++) {
        const ConfigKey *k = &KEYS[i];
        const void *v = field_const(c, k);
        cJSON *item = NULL;
        switch (k->type) {
        case CONFIG_TYPE_Int:
            item = cJSON_CreateNumber(*(const ConfigInt *)v);
            break;
        case CONFIG_TYPE_Float:
            item = cJSON_CreateNumber(float_for_json(*(const ConfigFloat *)v));
            break;
        case CONFIG_TYPE_Bool:
            item = cJSON_CreateBool(*(const ConfigBool *)v);
            break;
        case CONFIG_TYPE_Choice:
            item = cJSON_CreateString(*(const ConfigChoice *)v);
            break;
        case CONFIG_TYPE_Paths: {
            const ConfigPaths *p = v;
            item = cJSON_CreateStringArray((const char *const *)p->items, p->n);
            break;
        }
        }
        if (!item || !cJSON_AddItemToObject(root, k->name, item)) {
            cJSON_Delete(item);
            cJSON_Delete(root);
            return NULL;
        }
    }
    char *json = root ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    return json;
}

/* ---- resolution --------------------------------------------------------------------- */

int config_resolve(TrainConfig *c, Error *err)
{
    if (c->kv_heads == 0)
        c->kv_heads = c->heads;
    if (c->ffn_dim == 0) /* SwiGLU has three matrices: 8/3 C keeps the 4C MLP's size */
        c->ffn_dim = (8 * c->dim / 3 + 31) / 32 * 32;
    if (c->seq_len == 0)
        c->seq_len = c->context;
    if (c->decay_steps == 0)
        c->decay_steps = c->steps;
    if (c->vocab_size == 0 && strcmp(c->tokenizer, "bpe") == 0)
        c->vocab_size = 512;
    if (c->seq_len > c->context)
        return error_set(err, "seq_len %d exceeds context %d", c->seq_len, c->context);
    if (c->dim % c->heads != 0)
        return error_set(err, "dim %d is not a multiple of heads %d", c->dim, c->heads);
    if (c->heads % c->kv_heads != 0)
        return error_set(err, "kv_heads %d does not divide heads %d", c->kv_heads, c->heads);
    if ((c->dim / c->heads) % 2 != 0)
        return error_set(err, "head size dim/heads = %d must be even (RoPE rotates pairs)",
                         c->dim / c->heads);
    if (c->min_lr > c->lr)
        return error_set(err, "min_lr %g exceeds lr %g", c->min_lr, c->lr);
    return 0;
}

int config_write_run_file(const TrainConfig *c, const char *dir, Error *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    char *json = config_to_json(c);
    if (!json)
        return error_set(err, "out of memory");
    int status = file_write_atomic(path, json, strlen(json), err);
    free(json);
    return status;
}

int config_absolute_data_paths(TrainConfig *c, Error *err)
{
    char cwd[4096];
    for (int i = 0; i < c->data.n; i++) {
        if (c->data.items[i][0] == '/')
            continue;
        if (!getcwd(cwd, sizeof cwd))
            return error_set(err, "cannot tell the working directory: %s", strerror(errno));
        size_t size = strlen(cwd) + 1 + strlen(c->data.items[i]) + 1;
        char *absolute = malloc(size);
        if (!absolute)
            return error_set(err, "out of memory");
        snprintf(absolute, size, "%s/%s", cwd, c->data.items[i]);
        free(c->data.items[i]);
        c->data.items[i] = absolute;
    }
    return 0;
}

int config_check_fixed_keys(const TrainConfig *saved, const TrainConfig *requested, Error *err)
{
    for (int i = 0; i < N_KEYS; i++) {
        const ConfigKey *k = &KEYS[i];
        if (!k->fixed)
            continue;
        const void *a = field_const(saved, k), *b = field_const(requested, k);
        size_t size = k->type == CONFIG_TYPE_Int     ? sizeof(ConfigInt)
                      : k->type == CONFIG_TYPE_Float ? sizeof(ConfigFloat)
                      : k->type == CONFIG_TYPE_Bool  ? sizeof(ConfigBool)
                                                     : 0;
        bool differ = k->type == CONFIG_TYPE_Choice
                          ? strcmp(*(const ConfigChoice *)a, *(const ConfigChoice *)b) != 0
                          : memcmp(a, b, size) != 0;
        if (differ)
            return error_set(err, "key '%s' cannot change when resuming (the checkpoint was "
                                  "made with another value)",
                             k->name);
    }
    return 0;
}

ModelConfig config_model(const TrainConfig *c)
{
    return (ModelConfig){
        .n_layers = c->layers,
        .dim = c->dim,
        .n_heads = c->heads,
        .n_kv_heads = c->kv_heads,
        .ffn_dim = c->ffn_dim,
        .vocab_size = c->vocab_size,
        .context = c->context,
        .rope_base = c->rope_base,
        .norm_eps = c->norm_eps,
        .tie_embeddings = c->tie_embeddings,
    };
}

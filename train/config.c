#include "config.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

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

/* The allowed values of the Choice keys. */
static const struct {
    const char *key;
    const char *options[2];
} CHOICES[] = {
    {"tokenizer", {"char", "bpe"}},
    {"optimizer", {"adamw", "sgd"}},
};

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
        return error_set(err, "%s: unknown key '%s' (did you mean '%s'?)", origin, name, best);
    return error_set(err, "%s: unknown key '%s'", origin, name);
}

static void paths_clear(ConfigPaths *p)
{
    for (int i = 0; i < p->n; i++)
        free(p->items[i]);
    free(p->items);
    p->items = NULL;
    p->n = 0;
}

static int paths_append(ConfigPaths *p, const char *path, Error *err)
{
    char **grown = realloc(p->items, (size_t)(p->n + 1) * sizeof *grown);
    char *copy = strdup(path);
    if (!grown || !copy) {
        free(copy);
        if (grown)
            p->items = grown;
        return error_set(err, "out of memory");
    }
    p->items = grown;
    p->items[p->n++] = copy;
    return 0;
}

/* Sets a key from text; `what` names the source in messages ("--lr", "x.json: key 'lr'"). */
static int key_set_text(TrainConfig *c, const ConfigKey *k, const char *text, const char *what,
                        Error *err)
{
    long l = 0;
    double d = 0.0;
    switch (k->type) {
    case CONFIG_TYPE_Int:
        if (cli_parse_long(what, text, (long)k->min, (long)k->max, &l, err) != 0)
            return -1;
        *(ConfigInt *)field(c, k) = (int)l;
        return 0;
    case CONFIG_TYPE_Float:
        if (cli_parse_double(what, text, k->min, k->max, &d, err) != 0)
            return -1;
        *(ConfigFloat *)field(c, k) = (float)d;
        return 0;
    case CONFIG_TYPE_Bool:
        if (strcmp(text, "true") != 0 && strcmp(text, "false") != 0)
            return error_set(err, "%s expects true or false, got '%s'", what, text);
        *(ConfigBool *)field(c, k) = strcmp(text, "true") == 0;
        return 0;
    case CONFIG_TYPE_Choice:
        for (size_t i = 0; i < sizeof CHOICES / sizeof *CHOICES; i++) {
            if (strcmp(CHOICES[i].key, k->name) != 0)
                continue;
            for (int j = 0; j < 2; j++) {
                if (strcmp(text, CHOICES[i].options[j]) == 0) {
                    snprintf(field(c, k), sizeof(ConfigChoice), "%s", text);
                    return 0;
                }
            }
            return error_set(err, "%s expects %s or %s, got '%s'", what, CHOICES[i].options[0],
                             CHOICES[i].options[1], text);
        }
        return error_set(err, "%s: no choices defined", what);
    case CONFIG_TYPE_Paths:
        paths_clear(field(c, k));
        return *text ? paths_append(field(c, k), text, err) : 0;
    }
    return error_set(err, "%s: unknown key type", what);
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
        paths_clear(&c->data);
}

int config_copy(TrainConfig *dst, const TrainConfig *src, Error *err)
{
    *dst = *src;
    dst->data = (ConfigPaths){0};
    for (int i = 0; i < src->data.n; i++)
        if (paths_append(&dst->data, src->data.items[i], err) != 0)
            return -1;
    return 0;
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
    paths_clear(paths);
    const cJSON *entry;
    cJSON_ArrayForEach(entry, item)
    {
        if (!cJSON_IsString(entry))
            return error_set(err, "%s expects a list of file names", what);
        if (paths_append(paths, entry->valuestring, err) != 0)
            return -1;
    }
    return 0;
}

int config_apply_json(TrainConfig *c, const char *json, const char *origin, Error *err)
{
    cJSON *root = cJSON_Parse(json);
    if (!root)
        return error_set(err, "%s: not valid JSON (near '%.20s')", origin,
                         cJSON_GetErrorPtr() ? cJSON_GetErrorPtr() : "");
    int status = 0;
    if (!cJSON_IsObject(root))
        status = error_set(err, "%s: expected a JSON object of keys", origin);
    const cJSON *item;
    cJSON_ArrayForEach(item, root)
    {
        if (status != 0)
            break;
        const ConfigKey *k = key_find(item->string);
        if (!k) {
            status = error_unknown_key(err, origin, item->string);
            break;
        }
        char what[300], text[4096];
        snprintf(what, sizeof what, "%s: key '%s'", origin, k->name);
        if (k->type == CONFIG_TYPE_Paths)
            status = json_apply_paths(c, k, item, what, err);
        else if (json_value_text(k, item, what, text, sizeof text, err) != 0)
            status = -1;
        else
            status = key_set_text(c, k, text, what, err);
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
    int status = config_apply_json(c, text, path, err);
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
            item = cJSON_CreateString((const char *)v);
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

/* ---- flags -------------------------------------------------------------------------- */

int config_apply_flag(TrainConfig *c, const char *name, int argc, char **argv, int *i,
                      Error *err)
{
    char key_name[64];
    bool negated = strncmp(name, "no-", 3) == 0;
    snprintf(key_name, sizeof key_name, "%s", negated ? name + 3 : name);
    for (char *p = key_name; *p; p++)
        if (*p == '-')
            *p = '_';
    const ConfigKey *k = key_find(key_name);
    if (!k || (negated && k->type != CONFIG_TYPE_Bool))
        return 1;
    char what[80];
    snprintf(what, sizeof what, "--%s", name);
    if (k->type == CONFIG_TYPE_Bool) {
        *(ConfigBool *)field(c, k) = !negated;
        return 0;
    }
    if (k->type == CONFIG_TYPE_Paths) {
        /* --data takes every following argument up to the next flag */
        ConfigPaths *paths = field(c, k);
        paths_clear(paths);
        while (*i + 1 < argc && strncmp(argv[*i + 1], "--", 2) != 0)
            if (paths_append(paths, argv[++*i], err) != 0)
                return -1;
        if (paths->n == 0)
            return error_set(err, "%s needs at least one file", what);
        return 0;
    }
    if (*i + 1 >= argc)
        return error_set(err, "%s needs a value", what);
    return key_set_text(c, k, argv[++*i], what, err);
}

void config_write_help(FILE *out)
{
    for (int i = 0; i < N_KEYS; i++) {
        const ConfigKey *k = &KEYS[i];
        char flag[48];
        snprintf(flag, sizeof flag, "--%s", k->name);
        for (char *p = flag + 2; *p; p++)
            if (*p == '_')
                *p = '-';
        const char *value = k->type == CONFIG_TYPE_Bool    ? ""
                            : k->type == CONFIG_TYPE_Paths ? " FILE..."
                                                           : " V";
        char left[64];
        snprintf(left, sizeof left, "%s%s", flag, value);
        fprintf(out, "  %-24s %s", left, k->help);
        if (*k->def)
            fprintf(out, " [%s]", k->def);
        fputc('\n', out);
    }
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
                                                     : sizeof(ConfigChoice);
        if (k->type == CONFIG_TYPE_Choice ? strcmp(a, b) != 0 : memcmp(a, b, size) != 0)
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

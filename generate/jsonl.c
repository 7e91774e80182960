#include "jsonl.h"

#include <string.h>

#include "utf8.h"

bool json_write_string(FILE *out, const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    bool valid = true;
    fputc('"', out);
    for (size_t i = 0; i < n;) {
        uint32_t unused;
        int len = utf8_decode(p + i, n - i, &unused);
        if (len < 0) {
            fputs("\xEF\xBF\xBD", out); /* U+FFFD */
            valid = false;
            i += (size_t)-len;
            continue;
        }
        unsigned char c = p[i];
        if (c == '"' || c == '\\')
            fprintf(out, "\\%c", c);
        else if (c == '\n')
            fputs("\\n", out);
        else if (c == '\t')
            fputs("\\t", out);
        else if (c < 0x20)
            fprintf(out, "\\u%04x", c);
        else
            fwrite(p + i, 1, (size_t)len, out);
        i += (size_t)len;
    }
    fputc('"', out);
    return valid;
}

static void json_write_hex(FILE *out, const char *s, size_t n)
{
    fputc('"', out);
    for (size_t i = 0; i < n; i++)
        fprintf(out, "%02x", (unsigned char)s[i]);
    fputc('"', out);
}

/* The adapters of the run, for "settings": [{"path":...,"scale":...}, ...], the paths as
 * --lora gave them. */
static void json_write_adapters(FILE *out, const AdapterList *list)
{
    fputc('[', out);
    for (int i = 0; i < list->n; i++) {
        fputs(i ? ",{\"path\":" : "{\"path\":", out);
        json_write_string(out, list->paths[i], strlen(list->paths[i]));
        fprintf(out, ",\"scale\":%g}", list->scales[i]);
    }
    fputc(']', out);
}

/* ,"key":"value" for a flag's text, or ,"key":null when the flag was not given. */
static void json_write_flag_text(FILE *out, const char *key, const char *value)
{
    fprintf(out, ",\"%s\":", key);
    if (value)
        json_write_string(out, value, strlen(value));
    else
        fputs("null", out);
}

/* The constraints and the guidance of the run, as their flags gave them: the grammar's
 * sources (--grammar text, --grammar-file path, --json-schema as typed, --json), the
 * guidance (--guide, --guide-attribute, --negative-prompt, --guide-strength) and
 * --must-include. */
static void json_write_constraints(FILE *out, const GenerateOptions *o)
{
    json_write_flag_text(out, "grammar", o->grammar);
    json_write_flag_text(out, "grammar_file", o->grammar_file);
    json_write_flag_text(out, "json_schema", o->json_schema);
    fprintf(out, ",\"json\":%s", o->json ? "true" : "false");
    json_write_flag_text(out, "guide", o->guide);
    json_write_flag_text(out, "guide_attribute", o->guide_attribute);
    json_write_flag_text(out, "negative_prompt", o->negative_prompt);
    fprintf(out, ",\"guide_strength\":%g", o->guide_strength);
    json_write_flag_text(out, "must_include", o->must_include);
}

void jsonl_write_completions(FILE *out, const GenerateOptions *o, const Completion *c, int n)
{
    const SamplerParams *sp = &o->sampler;
    for (int i = 0; i < n; i++) {
        const char *text = c[i].text ? c[i].text : "";
        fputs("{\"text\":", out);
        if (!json_write_string(out, text, c[i].len)) {
            fputs(",\"text_hex\":", out);
            json_write_hex(out, text, c[i].len);
        }
        fputs(",\"tokens\":[", out);
        for (int t = 0; t < c[i].n_tokens; t++)
            fprintf(out, t ? ",%d" : "%d", c[i].tokens[t]);
        fprintf(out, "],\"finish_reason\":\"%s\",\"seed\":%llu", finish_reason_name(c[i].finish),
                (unsigned long long)c[i].seed);
        if (o->beam_size > 1)
            fprintf(out, ",\"score\":%.6f", c[i].score);
        fprintf(out, ",\"settings\":{\"temperature\":%g,\"top_k\":%d,\"top_p\":%g,\"min_p\":%g,"
                     "\"typical_p\":%g,\"repeat_penalty\":%g,\"repeat_last_n\":%d,"
                     "\"frequency_penalty\":%g,\"presence_penalty\":%g,\"beam_size\":%d,"
                     "\"length_penalty\":%g,\"max_tokens\":%d,\"lora\":",
                sp->temperature, sp->top_k, sp->top_p, sp->min_p, sp->typical_p,
                sp->repeat_penalty, sp->repeat_last_n, sp->frequency_penalty,
                sp->presence_penalty, o->beam_size, o->length_penalty, o->max_tokens);
        json_write_adapters(out, &o->loras);
        json_write_constraints(out, o);
        fputs("}}\n", out);
    }
}

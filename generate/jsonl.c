#include "jsonl.h"

/* The bytes at s[0..n) that make one character: its length when they start with a
 * well-formed UTF-8 sequence (Unicode's Table 3-7: the second byte's range depends on the
 * first, which rules out overlong forms, surrogates and code points above U+10FFFF), or
 * minus the length of the longest start of one (at least 1 byte): the maximal subpart that
 * one U+FFFD replaces. */
static int utf8_sequence(const unsigned char *s, size_t n)
{
    unsigned char lead = s[0], low = 0x80, high = 0xBF;
    size_t need;
    if (lead < 0x80)
        return 1;
    if (lead >= 0xC2 && lead <= 0xDF) {
        need = 2;
    } else if (lead >= 0xE0 && lead <= 0xEF) {
        need = 3;
        low = lead == 0xE0 ? 0xA0 : 0x80;  /* E0 80..9F would be overlong */
        high = lead == 0xED ? 0x9F : 0xBF; /* ED A0..BF would be a surrogate */
    } else if (lead >= 0xF0 && lead <= 0xF4) {
        need = 4;
        low = lead == 0xF0 ? 0x90 : 0x80;  /* F0 80..8F would be overlong */
        high = lead == 0xF4 ? 0x8F : 0xBF; /* F4 90.. would be above U+10FFFF */
    } else {
        return -1; /* a continuation byte, C0, C1 or F5..FF: never a start */
    }
    size_t i = 1;
    for (; i < need && i < n && s[i] >= low && s[i] <= high; i++) {
        low = 0x80;
        high = 0xBF;
    }
    return i == need ? (int)need : -(int)i;
}

bool json_write_string(FILE *out, const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    bool valid = true;
    fputc('"', out);
    for (size_t i = 0; i < n;) {
        int len = utf8_sequence(p + i, n - i);
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
                     "\"length_penalty\":%g,\"max_tokens\":%d}}\n",
                sp->temperature, sp->top_k, sp->top_p, sp->min_p, sp->typical_p,
                sp->repeat_penalty, sp->repeat_last_n, sp->frequency_penalty,
                sp->presence_penalty, o->beam_size, o->length_penalty, o->max_tokens);
    }
}

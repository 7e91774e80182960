/* Chat templates (chat.h has the overview). Each family is one row of a table: what goes
 * before and after each role's content, the generation prompt, and how the family treats
 * white space and the system message. One renderer writes every family from its row, so
 * that the whole conversation and the continuation of a conversation come from the same
 * code. The reference templates, rendered by Jinja as Hugging Face does, are quoted in
 * docs/formats.md; tests/test_chat.c checks the output for each family. */
#include "chat.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buffer.h"
#include "utf8.h"

/* How a family trims message content (Jinja's `trim` filter and Python's str.strip remove
 * white space at both ends). */
typedef enum {
    TRIM_NONE,
    TRIM_EACH,   /* each message's content; a system text put in front stays as it is */
    TRIM_MERGED, /* the content after the system text is put in front (Llama 2) */
} TrimRule;

typedef struct {
    ChatFamily family;
    const char *name;
    const char *bos;               /* written once before the first message */
    const char *open[3];           /* before the content, by ChatRole */
    const char *close[3];          /* after the content, by ChatRole */
    const char *generation;        /* add_generation_prompt: opens the assistant's turn */
    const char *end_no_generation; /* written last when there is no generation prompt */
    bool system_in_first_user;     /* no system turn: the system text goes in front of the
                                      first user message, with these around it: */
    const char *system_before, *system_after;
    bool skip_empty_system; /* an empty system message writes nothing (Phi-3.5) */
    bool writes_bos;        /* the text holds the bos token's text (bos, or Llama 2's "<s>"
                               before every [INST]) */
    TrimRule trim;
} ChatFormat;

/* The reference template of each row: chatml, OpenHermes-2.5 (Qwen2.5 adds a default
 * system message; Qwen3 adds <think> blocks around replies after the last user message);
 * llama2, Llama-2-7b-chat-hf; llama3, Meta-Llama-3-8B-Instruct; zephyr, zephyr-7b-beta;
 * mistral, Mistral-7B-Instruct-v0.2's "v1" template; gemma, gemma-3-it (Gemma 1 and 2
 * refuse a system message); phi3, Phi-3.5-mini-instruct. */
static const ChatFormat FORMATS[] = {
    {CHAT_CHATML, "chatml", "",
     {"<|im_start|>system\n", "<|im_start|>user\n", "<|im_start|>assistant\n"},
     {"<|im_end|>\n", "<|im_end|>\n", "<|im_end|>\n"},
     "<|im_start|>assistant\n", "", false, NULL, NULL, false, false, TRIM_NONE},
    {CHAT_LLAMA2, "llama2", "",
     {"", "<s>[INST] ", " "},
     {"", " [/INST]", " </s>"},
     "", "", true, "<<SYS>>\n", "\n<</SYS>>\n\n", false, true, TRIM_MERGED},
    {CHAT_LLAMA3, "llama3", "<|begin_of_text|>",
     {"<|start_header_id|>system<|end_header_id|>\n\n",
      "<|start_header_id|>user<|end_header_id|>\n\n",
      "<|start_header_id|>assistant<|end_header_id|>\n\n"},
     {"<|eot_id|>", "<|eot_id|>", "<|eot_id|>"},
     "<|start_header_id|>assistant<|end_header_id|>\n\n", "", false, NULL, NULL, false, true,
     TRIM_EACH},
    {CHAT_ZEPHYR, "zephyr", "",
     {"<|system|>\n", "<|user|>\n", "<|assistant|>\n"},
     {"</s>\n", "</s>\n", "</s>\n"},
     "<|assistant|>\n", "", false, NULL, NULL, false, false, TRIM_NONE},
    {CHAT_MISTRAL, "mistral", "<s>",
     {"", " [INST] ", " "},
     {"", " [/INST]", "</s>"},
     "", "", true, "", "\n\n", false, true, TRIM_NONE},
    {CHAT_GEMMA, "gemma", "<bos>",
     {"", "<start_of_turn>user\n", "<start_of_turn>model\n"},
     {"", "<end_of_turn>\n", "<end_of_turn>\n"},
     "<start_of_turn>model\n", "", true, "", "\n\n", false, true, TRIM_EACH},
    {CHAT_PHI3, "phi3", "",
     {"<|system|>\n", "<|user|>\n", "<|assistant|>\n"},
     {"<|end|>\n", "<|end|>\n", "<|end|>\n"},
     "<|assistant|>\n", "<|endoftext|>", false, NULL, NULL, true, false, TRIM_NONE},
};
enum { N_FORMATS = sizeof FORMATS / sizeof FORMATS[0] };

static const ChatFormat *chat_format_of(ChatFamily family)
{
    for (int i = 0; i < N_FORMATS; i++)
        if (FORMATS[i].family == family)
            return &FORMATS[i];
    return NULL;
}

/* ---- Families ---- */

static bool contains(const char *text, const char *marker)
{
    return strstr(text, marker) != NULL;
}

/* The markers are tokens each family's template writes. Order matters where two families
 * share one: "[INST]" is Llama 2 with <<SYS>> and Mistral without; "<|user|>" is Phi-3
 * with <|end|> and Zephyr without. Formats quill does not write are left unknown rather
 * than written wrongly: Phi-4 (ChatML with <|im_sep|>) and Mistral's "v7"
 * ([SYSTEM_PROMPT]). */
ChatFamily chat_family_detect(const char *t)
{
    if (!t)
        return CHAT_UNKNOWN;
    if (contains(t, "<|im_start|>"))
        return contains(t, "<|im_sep|>") ? CHAT_UNKNOWN : CHAT_CHATML;
    if (contains(t, "<|start_header_id|>"))
        return CHAT_LLAMA3;
    if (contains(t, "<start_of_turn>"))
        return CHAT_GEMMA;
    if (contains(t, "[INST]")) {
        if (contains(t, "[SYSTEM_PROMPT]"))
            return CHAT_UNKNOWN;
        return contains(t, "<<SYS>>") ? CHAT_LLAMA2 : CHAT_MISTRAL;
    }
    if (contains(t, "<|user|>"))
        return contains(t, "<|end|>") ? CHAT_PHI3 : CHAT_ZEPHYR;
    return CHAT_UNKNOWN;
}

ChatFamily chat_family_from_gguf(const GgufFile *f)
{
    const GgufKV *kv = gguf_find_kv(f, "tokenizer.chat_template");
    if (!kv || kv->type != GGUF_TYPE_STRING)
        return CHAT_UNKNOWN;
    return chat_family_detect(kv->value.s);
}

ChatFamily chat_family_from_name(const char *name)
{
    for (int i = 0; name && i < N_FORMATS; i++)
        if (strcmp(FORMATS[i].name, name) == 0)
            return FORMATS[i].family;
    return CHAT_UNKNOWN;
}

const char *chat_family_name(ChatFamily family)
{
    const ChatFormat *f = chat_format_of(family);
    return f ? f->name : "unknown";
}

const char *chat_family_names(void)
{
    return "chatml, llama2, llama3, zephyr, mistral, gemma, phi3";
}

bool chat_template_writes_bos(ChatFamily family)
{
    const ChatFormat *f = chat_format_of(family);
    return f && f->writes_bos;
}

/* ---- Text ---- */

typedef struct {
    char *data;
    size_t n, cap;
} Text;

static int text_append(Text *t, const char *s, size_t n, Error *err)
{
    if (buffer_reserve(&t->data, &t->cap, t->n + n + 1, 256, "chat text", err) != 0)
        return -1;
    memcpy(t->data + t->n, s, n);
    t->n += n;
    t->data[t->n] = '\0';
    return 0;
}

static int text_append_str(Text *t, const char *s, Error *err)
{
    return text_append(t, s, strlen(s), err);
}

/* White space as Python's str.isspace sees it (Jinja's trim and str.strip use it): the
 * ASCII controls \t \n \v \f \r and 0x1C-0x1F, the space, and Unicode's spaces and line
 * separators. */
static bool codepoint_is_space(uint32_t c)
{
    return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
           c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
           c == 0x202F || c == 0x205F || c == 0x3000;
}

/* Appends s without the white space at its ends. */
static int text_append_trimmed(Text *t, const char *str, Error *err)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t begin = 0, end = strlen(str);
    while (begin < end) {
        uint32_t c;
        int n = utf8_decode(s + begin, end - begin, &c);
        if (n < 0 || !codepoint_is_space(c))
            break;
        begin += (size_t)n;
    }
    while (end > begin) {
        size_t start = end - 1; /* back to the lead byte of the last character */
        while (start > begin && end - start < 4 && (s[start] & 0xC0) == 0x80)
            start--;
        int32_t c = utf8_code(s + start, end - start);
        if (c < 0 || !codepoint_is_space((uint32_t)c))
            break;
        end = start;
    }
    return text_append(t, str + begin, end - begin, err);
}

/* ---- Rendering ---- */

static const char *role_name(ChatRole role)
{
    static const char *const names[] = {"system", "user", "assistant"};
    return names[role];
}

/* The conversations a family can write: known roles and content; for families without a
 * system turn, a system message only first and then user, assistant, user, ... */
static int chat_validate(const ChatFormat *f, const ChatMessage *msgs, int n, Error *err)
{
    if (n < 1)
        return error_set(err, "chat: a conversation needs at least one message");
    int turn = 0;
    for (int i = 0; i < n; i++) {
        if ((int)msgs[i].role < 0 || (int)msgs[i].role > CHAT_ROLE_ASSISTANT)
            return error_set(err, "chat: message %d has an unknown role (%d)", i,
                             (int)msgs[i].role);
        if (!msgs[i].content)
            return error_set(err, "chat: message %d has no content", i);
        if (!f->system_in_first_user)
            continue;
        if (msgs[i].role == CHAT_ROLE_SYSTEM) {
            if (i > 0)
                return error_set(err, "chat: %s takes one system message, first (message %d "
                                      "is another)",
                                 f->name, i);
            continue;
        }
        ChatRole expected = turn % 2 == 0 ? CHAT_ROLE_USER : CHAT_ROLE_ASSISTANT;
        if (msgs[i].role != expected)
            return error_set(err, "chat: %s needs user and assistant messages to alternate, "
                                  "starting with the user (message %d is from the %s)",
                             f->name, i, role_name(msgs[i].role));
        turn++;
    }
    return 0;
}

/* One message's content, with the system text in front where the family puts it there. */
static int render_content(const ChatFormat *f, const char *system, const char *content,
                          Text *out, Error *err)
{
    if (!system)
        return f->trim == TRIM_NONE ? text_append_str(out, content, err)
                                    : text_append_trimmed(out, content, err);
    Text merged = {0};
    int rc = text_append_str(&merged, f->system_before, err);
    if (rc == 0)
        rc = text_append_str(&merged, system, err);
    if (rc == 0)
        rc = text_append_str(&merged, f->system_after, err);
    if (rc == 0 && f->trim == TRIM_EACH)
        rc = text_append_trimmed(&merged, content, err);
    else if (rc == 0)
        rc = text_append_str(&merged, content, err);
    if (rc == 0)
        rc = f->trim == TRIM_MERGED ? text_append_trimmed(out, merged.data, err)
                                    : text_append(out, merged.data, merged.n, err);
    free(merged.data);
    return rc;
}

/* Writes messages [from, n): from 0, the whole conversation with the bos text in front;
 * from > 0 (after the assistant message from - 1), the end of that message's turn first.
 * Then the generation prompt, or what the family writes without one. */
static int chat_render(const ChatFormat *f, const ChatMessage *msgs, int n, int from,
                       bool add_generation_prompt, Text *out, Error *err)
{
    const char *system = NULL;
    if (f->system_in_first_user && msgs[0].role == CHAT_ROLE_SYSTEM)
        system = msgs[0].content;
    int first_user = 0;
    while (first_user < n && msgs[first_user].role != CHAT_ROLE_USER)
        first_user++;
    int rc = from == 0 ? text_append_str(out, f->bos, err)
                       : text_append_str(out, f->close[CHAT_ROLE_ASSISTANT], err);
    for (int i = from; i < n && rc == 0; i++) {
        const ChatMessage *m = &msgs[i];
        if (m->role == CHAT_ROLE_SYSTEM && (f->system_in_first_user ||
                                            (f->skip_empty_system && m->content[0] == '\0')))
            continue;
        rc = text_append_str(out, f->open[m->role], err);
        if (rc == 0)
            rc = render_content(f, i == first_user ? system : NULL, m->content, out, err);
        if (rc == 0)
            rc = text_append_str(out, f->close[m->role], err);
    }
    if (rc == 0)
        rc = text_append_str(out, add_generation_prompt ? f->generation : f->end_no_generation,
                             err);
    return rc;
}

static int chat_render_to(ChatFamily family, const ChatMessage *msgs, int n, int from,
                          bool add_generation_prompt, char **out, Error *err)
{
    *out = NULL;
    const ChatFormat *f = chat_format_of(family);
    if (!f)
        return error_set(err, "chat: no chat template (family %s); quill knows %s",
                         chat_family_name(family), chat_family_names());
    if (chat_validate(f, msgs, n, err) < 0)
        return -1;
    Text text = {0};
    if (chat_render(f, msgs, n, from, add_generation_prompt, &text, err) < 0 ||
        text_append(&text, "", 0, err) < 0) {
        free(text.data);
        return -1;
    }
    *out = text.data;
    return 0;
}

int chat_format(ChatFamily family, const ChatMessage *msgs, int n, bool add_generation_prompt,
                char **out, Error *err)
{
    return chat_render_to(family, msgs, n, 0, add_generation_prompt, out, err);
}

int chat_format_continuation(ChatFamily family, const ChatMessage *msgs, int n, int n_past,
                             bool add_generation_prompt, char **out, Error *err)
{
    *out = NULL;
    if (n_past < 1 || n_past > n)
        return error_set(err, "chat: %d messages seen of %d", n_past, n);
    if (msgs[n_past - 1].role != CHAT_ROLE_ASSISTANT)
        return error_set(err, "chat: a continuation follows the assistant's reply, but "
                              "message %d is from the %s",
                         n_past - 1, role_name(msgs[n_past - 1].role));
    return chat_render_to(family, msgs, n, n_past, add_generation_prompt, out, err);
}

/* Chat template tests: family detection on template text (real templates from the shared
 * vocabularies, and snippets with each family's markers), the formatted text against what
 * each family's reference Jinja template renders (written out by hand below), the
 * continuation identity for every family, and the special-token text of a formatted
 * prompt becoming control ids. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat.h"
#include "gguf.h"
#include "test_util.h"
#include "tokenizer.h"

/* ---- Detection ---- */

Test(chat, detects_families_by_markers)
{
    static const struct {
        const char *snippet;
        ChatFamily family;
    } cases[] = {
        {"{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>'}}",
         CHAT_CHATML},
        {"{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% set content = "
         "'<<SYS>>\\n' + system_message %}",
         CHAT_LLAMA2},
        {"{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>' %}",
         CHAT_LLAMA3},
        {"{{ '<|user|>\\n' + message['content'] + eos_token }}{{ '<|assistant|>' }}",
         CHAT_ZEPHYR},
        {"{{- ' [INST] ' + message['content'] + ' [/INST]' }}{{- ' ' + message['content'] + "
         "eos_token}}",
         CHAT_MISTRAL},
        {"{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>' }}",
         CHAT_GEMMA},
        {"{{'<|user|>\\n' + message['content'] + '<|end|>\\n'}}{{ '<|assistant|>\\n' }}",
         CHAT_PHI3},
        /* Formats quill does not write are unknown, not written wrongly. */
        {"{{'<|im_start|>' + message['role'] + '<|im_sep|>'}}", CHAT_UNKNOWN},
        {"[SYSTEM_PROMPT] {{ system }}[/SYSTEM_PROMPT][INST] {{ content }}[/INST]", CHAT_UNKNOWN},
        {"{% for m in messages %}{{ m.role }}: {{ m.content }}\\n{% endfor %}", CHAT_UNKNOWN},
        {"", CHAT_UNKNOWN},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        cr_assert_eq(chat_family_detect(cases[i].snippet), cases[i].family,
                     "'%s': expected %s, got %s", cases[i].snippet,
                     chat_family_name(cases[i].family),
                     chat_family_name(chat_family_detect(cases[i].snippet)));
    cr_assert_eq(chat_family_detect(NULL), CHAT_UNKNOWN);
}

Test(chat, families_by_name)
{
    static const char *const names[] = {"chatml", "llama2", "llama3", "zephyr",
                                        "mistral", "gemma",  "phi3"};
    for (int i = 0; i < 7; i++) {
        ChatFamily f = chat_family_from_name(names[i]);
        cr_assert_neq(f, CHAT_UNKNOWN, "%s", names[i]);
        cr_assert_str_eq(chat_family_name(f), names[i]);
        cr_assert(strstr(chat_family_names(), names[i]));
    }
    cr_assert_eq(chat_family_from_name("vicuna"), CHAT_UNKNOWN);
    cr_assert_eq(chat_family_from_name(NULL), CHAT_UNKNOWN);
    cr_assert_str_eq(chat_family_name(CHAT_UNKNOWN), "unknown");
}

/* The real templates stored in the shared Llama 3 and Qwen3 vocabularies. */
Test(chat, detects_real_templates, .timeout = 60)
{
    static const struct {
        const char *file;
        ChatFamily family;
    } cases[] = {
        {"vocab/ggml-vocab-llama3.gguf", CHAT_LLAMA3},
        {"vocab/ggml-vocab-qwen3.gguf", CHAT_CHATML},
    };
    for (int i = 0; i < 2; i++) {
        SHARED_FILE_OR_SKIP(path, cases[i].file);
        GgufFile *f;
        Error err;
        cr_assert_eq(gguf_open(&f, path, &err), 0, "%s", err.msg);
        cr_assert_eq(chat_family_from_gguf(f), cases[i].family, "%s: got %s", cases[i].file,
                     chat_family_name(chat_family_from_gguf(f)));
        gguf_close(f);
    }
    SHARED_FILE_OR_SKIP(spm, "vocab/ggml-vocab-llama-spm.gguf");
    GgufFile *f;
    Error err;
    cr_assert_eq(gguf_open(&f, spm, &err), 0, "%s", err.msg);
    cr_assert_eq(chat_family_from_gguf(f), CHAT_UNKNOWN, "no tokenizer.chat_template");
    gguf_close(f);
}

/* ---- Formatting ----
 * The expected strings are what each family's reference template (chat.c names them)
 * renders in Jinja with Hugging Face's settings, for the same conversation: a system
 * message, a user turn, the assistant's reply, and a second user turn, with the
 * generation prompt. */

static const ChatMessage CONVERSATION[] = {
    {CHAT_ROLE_SYSTEM, "You are terse."},
    {CHAT_ROLE_USER, "Hello"},
    {CHAT_ROLE_ASSISTANT, "Hi there"},
    {CHAT_ROLE_USER, "What is 2+2?"},
};
enum { N_CONVERSATION = 4 };

static const struct {
    ChatFamily family;
    const char *text;
} EXPECTED[] = {
    {CHAT_CHATML,
     "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n"
     "<|im_start|>assistant\nHi there<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
     "<|im_start|>assistant\n"},
    /* The system text goes inside <<SYS>> in the first [INST]; every [INST] has its <s>. */
    {CHAT_LLAMA2,
     "<s>[INST] <<SYS>>\nYou are terse.\n<</SYS>>\n\nHello [/INST] Hi there </s>"
     "<s>[INST] What is 2+2? [/INST]"},
    {CHAT_LLAMA3,
     "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>"
     "<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>"
     "<|start_header_id|>assistant<|end_header_id|>\n\nHi there<|eot_id|>"
     "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>"
     "<|start_header_id|>assistant<|end_header_id|>\n\n"},
    {CHAT_ZEPHYR,
     "<|system|>\nYou are terse.</s>\n<|user|>\nHello</s>\n<|assistant|>\nHi there</s>\n"
     "<|user|>\nWhat is 2+2?</s>\n<|assistant|>\n"},
    /* No system turn: the system text and a blank line go in front of the first message. */
    {CHAT_MISTRAL, "<s> [INST] You are terse.\n\nHello [/INST] Hi there</s> [INST] What is 2+2? "
                   "[/INST]"},
    {CHAT_GEMMA,
     "<bos><start_of_turn>user\nYou are terse.\n\nHello<end_of_turn>\n"
     "<start_of_turn>model\nHi there<end_of_turn>\n<start_of_turn>user\nWhat is 2+2?"
     "<end_of_turn>\n<start_of_turn>model\n"},
    {CHAT_PHI3,
     "<|system|>\nYou are terse.<|end|>\n<|user|>\nHello<|end|>\n<|assistant|>\nHi there<|end|>\n"
     "<|user|>\nWhat is 2+2?<|end|>\n<|assistant|>\n"},
};
enum { N_FAMILIES = sizeof EXPECTED / sizeof EXPECTED[0] };

static char *format_ok(ChatFamily family, const ChatMessage *msgs, int n, bool add_gen)
{
    char *text;
    Error err;
    cr_assert_eq(chat_format(family, msgs, n, add_gen, &text, &err), 0, "%s: %s",
                 chat_family_name(family), err.msg);
    return text;
}

Test(chat, formats_each_family)
{
    for (int i = 0; i < N_FAMILIES; i++) {
        char *text = format_ok(EXPECTED[i].family, CONVERSATION, N_CONVERSATION, true);
        cr_assert_str_eq(text, EXPECTED[i].text, "%s", chat_family_name(EXPECTED[i].family));
        free(text);
    }
}

/* White space around the content, no system message, and no generation prompt, again as
 * the reference templates render it: Llama 2 strips (Python's str.strip), Llama 3 and
 * Gemma trim (Jinja's trim), the others keep the text as it is; Phi-3 ends a conversation
 * without a generation prompt with its eos text. */
Test(chat, formats_white_space_and_no_generation_prompt)
{
    static const ChatMessage msgs[] = {
        {CHAT_ROLE_USER, "  Hello \n"},
        {CHAT_ROLE_ASSISTANT, " Hi there "},
        {CHAT_ROLE_USER, "Bye"},
    };
    static const struct {
        ChatFamily family;
        const char *text;
    } expected[] = {
        {CHAT_CHATML, "<|im_start|>user\n  Hello \n<|im_end|>\n<|im_start|>assistant\n Hi there "
                      "<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n"},
        {CHAT_LLAMA2, "<s>[INST] Hello [/INST] Hi there </s><s>[INST] Bye [/INST]"},
        {CHAT_LLAMA3, "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>"
                      "<|start_header_id|>assistant<|end_header_id|>\n\nHi there<|eot_id|>"
                      "<|start_header_id|>user<|end_header_id|>\n\nBye<|eot_id|>"},
        {CHAT_ZEPHYR,
         "<|user|>\n  Hello \n</s>\n<|assistant|>\n Hi there </s>\n<|user|>\nBye</s>\n"},
        {CHAT_MISTRAL, "<s> [INST]   Hello \n [/INST]  Hi there </s> [INST] Bye [/INST]"},
        {CHAT_GEMMA, "<bos><start_of_turn>user\nHello<end_of_turn>\n<start_of_turn>model\nHi there"
                     "<end_of_turn>\n<start_of_turn>user\nBye<end_of_turn>\n"},
        {CHAT_PHI3, "<|user|>\n  Hello \n<|end|>\n<|assistant|>\n Hi there <|end|>\n<|user|>\nBye"
                    "<|end|>\n<|endoftext|>"},
    };
    for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++) {
        char *text = format_ok(expected[i].family, msgs, 3, false);
        cr_assert_str_eq(text, expected[i].text, "%s", chat_family_name(expected[i].family));
        free(text);
    }
    /* The system text put in front of the first user message: Llama 2 strips the merged
     * text (so the spaces inside stay), Mistral keeps everything, Gemma keeps the system
     * text and trims the user's. */
    static const ChatMessage sys[] = {{CHAT_ROLE_SYSTEM, " Be brief. "},
                                      {CHAT_ROLE_USER, " Hello "}};
    static const struct {
        ChatFamily family;
        const char *text;
    } merged[] = {
        {CHAT_LLAMA2, "<s>[INST] <<SYS>>\n Be brief. \n<</SYS>>\n\n Hello [/INST]"},
        {CHAT_MISTRAL, "<s> [INST]  Be brief. \n\n Hello  [/INST]"},
        {CHAT_GEMMA, "<bos><start_of_turn>user\n Be brief. \n\nHello<end_of_turn>\n"
                     "<start_of_turn>model\n"},
    };
    for (size_t i = 0; i < sizeof merged / sizeof merged[0]; i++) {
        char *text = format_ok(merged[i].family, sys, 2, true);
        cr_assert_str_eq(text, merged[i].text, "%s", chat_family_name(merged[i].family));
        free(text);
    }
}

/* Unicode white space counts for trimming (U+3000 ideographic space, U+00A0 no-break
 * space), as in Python; an overlong encoding of a space does not. */
Test(chat, trims_unicode_white_space)
{
    static const ChatMessage msgs[] = {
        {CHAT_ROLE_USER, "\xe3\x80\x80\xc2\xa0Hi\t\xe3\x80\x80"},
        {CHAT_ROLE_ASSISTANT, "\xc0\xa0x"},
    };
    char *text = format_ok(CHAT_GEMMA, msgs, 2, false);
    cr_assert_str_eq(text, "<bos><start_of_turn>user\nHi<end_of_turn>\n"
                           "<start_of_turn>model\n\xc0\xa0x<end_of_turn>\n");
    free(text);
}

Test(chat, reports_what_a_family_cannot_write)
{
    char *text;
    Error err;
    cr_assert_eq(chat_format(CHAT_UNKNOWN, CONVERSATION, 2, true, &text, &err), -1);
    cr_assert(strstr(err.msg, "no chat template"), "%s", err.msg);
    cr_assert_null(text);
    /* Two user messages in a row: fine for ChatML, an error where roles must alternate. */
    static const ChatMessage users[] = {{CHAT_ROLE_USER, "a"}, {CHAT_ROLE_USER, "b"}};
    cr_assert_eq(chat_format(CHAT_CHATML, users, 2, true, &text, &err), 0, "%s", err.msg);
    free(text);
    cr_assert_eq(chat_format(CHAT_GEMMA, users, 2, true, &text, &err), -1);
    cr_assert(strstr(err.msg, "alternate"), "%s", err.msg);
    /* A second system message where there is no system turn. */
    static const ChatMessage late[] = {{CHAT_ROLE_USER, "a"}, {CHAT_ROLE_SYSTEM, "b"}};
    cr_assert_eq(chat_format(CHAT_LLAMA2, late, 2, true, &text, &err), -1);
    cr_assert(strstr(err.msg, "system"), "%s", err.msg);
    cr_assert_eq(chat_format(CHAT_CHATML, late, 0, true, &text, &err), -1);
    /* A continuation must follow the assistant's reply. */
    cr_assert_eq(chat_format_continuation(CHAT_CHATML, CONVERSATION, 4, 2, true, &text, &err),
                 -1);
    cr_assert(strstr(err.msg, "assistant"), "%s", err.msg);
}

/* ---- Continuation ----
 * The prompt of the first turn, the reply as the model writes it, and the continuation
 * must give exactly the formatted conversation. Llama 2 and Mistral put a space between
 * [/INST] and the reply; the model writes it as part of its first token ("▁Hi"). */
Test(chat, continuation_identity_for_every_family)
{
    for (int i = 0; i < N_FAMILIES; i++) {
        ChatFamily f = EXPECTED[i].family;
        char *prompt = format_ok(f, CONVERSATION, 2, true);
        char *full = format_ok(f, CONVERSATION, N_CONVERSATION, true);
        char *tail;
        Error err;
        cr_assert_eq(chat_format_continuation(f, CONVERSATION, N_CONVERSATION, 3, true, &tail,
                                              &err),
                     0, "%s", err.msg);
        const char *reply = f == CHAT_LLAMA2 || f == CHAT_MISTRAL ? " Hi there" : "Hi there";
        size_t n = strlen(prompt) + strlen(reply) + strlen(tail) + 1;
        char *joined = malloc(n);
        snprintf(joined, n, "%s%s%s", prompt, reply, tail);
        cr_assert_str_eq(joined, full, "%s: prompt + reply + continuation", chat_family_name(f));
        free(joined);
        free(tail);

        /* Without a generation prompt, after the reply alone: the end of the turn. */
        char *closed = format_ok(f, CONVERSATION, 3, false);
        cr_assert_eq(chat_format_continuation(f, CONVERSATION, 3, 3, false, &tail, &err), 0,
                     "%s", err.msg);
        n = strlen(prompt) + strlen(reply) + strlen(tail) + 1;
        joined = malloc(n);
        snprintf(joined, n, "%s%s%s", prompt, reply, tail);
        cr_assert_str_eq(joined, closed, "%s: the closed turn", chat_family_name(f));
        free(joined);
        free(tail);
        free(closed);
        free(prompt);
        free(full);
    }
}

/* ---- Into tokens ---- */

static bool has_id(const int *ids, size_t n, int id)
{
    for (size_t i = 0; i < n; i++)
        if (ids[i] == id)
            return true;
    return false;
}

/* A formatted prompt, encoded with parse_special, starts with the control tokens; the
 * template's own bos text becomes the bos id, so the tokenizer must not add another. */
Test(chat, formatted_prompt_becomes_control_tokens, .timeout = 60)
{
    static const struct {
        const char *file;
        ChatFamily family;
        int first, second, end_of_turn;
    } cases[] = {
        {"vocab/ggml-vocab-llama3.gguf", CHAT_LLAMA3, 128000, 128006, 128009},
        {"vocab/ggml-vocab-qwen3.gguf", CHAT_CHATML, 151644, 8948, 151645},
    };
    for (int c = 0; c < 2; c++) {
        SHARED_FILE_OR_SKIP(path, cases[c].file);
        GgufFile *f;
        Tokenizer tok;
        Error err;
        cr_assert_eq(gguf_open(&f, path, &err), 0, "%s", err.msg);
        cr_assert_eq(tokenizer_from_gguf(&tok, f, &err), 0, "%s", err.msg);
        ChatFamily family = chat_family_from_gguf(f);
        gguf_close(f);
        cr_assert_eq(family, cases[c].family);
        char *prompt = format_ok(family, CONVERSATION, 2, true);
        EncodeOptions opt = {.add_bos = tok.add_bos && !chat_template_writes_bos(family),
                             .parse_special = true};
        int *ids;
        size_t n;
        cr_assert_eq(tokenizer_encode_with(&tok, prompt, strlen(prompt), opt, &ids, &n, &err), 0,
                     "%s", err.msg);
        cr_assert(n > 2 && ids[0] == cases[c].first && ids[1] == cases[c].second,
                  "%s: starts %d %d", cases[c].file, ids[0], ids[1]);
        cr_assert(has_id(ids, n, cases[c].end_of_turn));
        cr_assert(n < 2 || ids[1] != tok.bos_id || tok.bos_id < 0, "two bos tokens");
        char *back;
        size_t len;
        cr_assert_eq(tokenizer_decode(&tok, ids, n, &back, &len, &err), 0, "%s", err.msg);
        cr_assert(strstr(back, "You are terse.") && !strstr(back, "<|"),
                  "control tokens decode to nothing: '%s'", back);
        free(back);
        free(ids);
        free(prompt);
        tokenizer_free(&tok);
    }
}

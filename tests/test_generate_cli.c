/* quill generate and quill chat end to end, on what a user sees: seeds, the JSON lines of
 * --output-file read by Python's json module (and its record of the LoRA adapters read by
 * cJSON), the context's limits, beam search's output,
 * the flags chat cannot honour, and the REPL on a real terminal (a pseudo-terminal). */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fileio.h"
#include "test_adapter.h"
#include "test_util.h"

/* Each "[seed N;" line of --verbose in text, in order, into seeds; returns how many. */
static int verbose_seeds(const char *text, long long *seeds, int cap)
{
    int n = 0;
    for (const char *p = strstr(text, "[seed "); p && n < cap; p = strstr(p + 1, "[seed "))
        seeds[n++] = strtoll(p + 6, NULL, 10);
    return n;
}

/* Two runs started together without --seed draw their seeds from the operating system, so
 * they differ (from the clock's seconds they were the same); each is a valid --seed value,
 * and giving it back reproduces the text. */
Test(generate_cli, runs_started_together_get_different_seeds, .timeout = 60)
{
    SHARED_FILE_OR_SKIP(model, "models/stories260K.gguf");
    char command[4096], *out;
    const char *run = "generate %s --prompt 'Once upon a time' -n 20 --verbose --no-echo";
    char one[1024];
    snprintf(one, sizeof one, run, model);
    snprintf(command, sizeof command, "{ %s %s & %s %s & wait; }", test_quill_bin(), one,
             test_quill_bin(), one);
    cr_assert_eq(test_run_capture(command, &out), 0, "%s", out);
    long long seeds[2];
    cr_assert_eq(verbose_seeds(out, seeds, 2), 2, "%s", out);
    cr_expect_neq(seeds[0], seeds[1], "both runs used seed %lld", seeds[0]);
    free(out);
    char *text, *messages, *again, *messages_again;
    int status;
    quill_stdout(&text, &messages, &status, "%s", one);
    cr_assert_eq(status, 0, "%s", messages);
    cr_assert_eq(verbose_seeds(messages, seeds, 1), 1, "%s", messages);
    cr_expect(seeds[0] >= 0 && seeds[0] <= INT32_MAX, "seed %lld is not a --seed value",
              seeds[0]);
    quill_stdout(&again, &messages_again, &status, "%s --seed %lld", one, seeds[0]);
    cr_assert_eq(status, 0, "%s", messages_again);
    cr_expect_str_eq(again, text, "--seed %lld did not reproduce the text", seeds[0]);
    free(text);
    free(messages);
    free(again);
    free(messages_again);
}

/* The hex digits of n bytes, into a static buffer. */
static const char *hex_of(const char *bytes, size_t n)
{
    static char hex[4096];
    for (size_t i = 0; i < n && 2 * i + 2 < sizeof hex; i++)
        snprintf(hex + 2 * i, 3, "%02x", (unsigned char)bytes[i]);
    hex[2 * (n < sizeof hex / 2 - 1 ? n : sizeof hex / 2 - 1)] = '\0';
    return hex;
}

/* Reads every line of a JSON-lines file with Python's json module, which refuses invalid
 * UTF-8, and prints the exact bytes of each text in hex: text_hex when the line has one
 * (checking that decoding it with errors="replace" gives text), else text's own bytes.
 * Returns the script's exit status and output, or -1 when there is no python3. */
static int python_read_jsonl(const char *path, char **output)
{
    if (system("command -v python3 > /dev/null 2>&1") != 0)
        return -1;
    char command[1024];
    snprintf(command, sizeof command,
             "python3 -c 'import json, sys\n"
             "for line in open(sys.argv[1], \"rb\"):\n"
             "    o = json.loads(line)\n"
             "    exact = bytes.fromhex(o[\"text_hex\"]) if \"text_hex\" in o else o[\"text\"].encode()\n"
             "    assert exact.decode(\"utf-8\", \"replace\") == o[\"text\"], line\n"
             "    print(exact.hex())' %s", path);
    return test_run_capture(command, output);
}

/* A generation that ends inside a character (token 243 is stories260K's byte token <0xF0>,
 * forced by a logit bias) gives JSON lines that iconv finds valid UTF-8 and Python's json
 * reads, with the exact bytes in text_hex: the bytes --no-echo wrote to stdout. Samples
 * side by side and beams write the same way. */
Test(generate_cli, output_file_lines_are_json_that_python_reads, .timeout = 60)
{
    SHARED_FILE_OR_SKIP(model, "models/stories260K.gguf");
    const char *dir = test_make_tmpdir();
    const char *runs[] = {"-n 1", "-n 3 --num-samples 2", "-n 3 --beam-size 2"};
    int compared = 0;
    for (int r = 0; r < 3; r++) {
        char file[256], *out, *messages, *parsed, command[512];
        int status;
        snprintf(file, sizeof file, "%s/run%d.jsonl", dir, r);
        size_t n = quill_stdout(&out, &messages, &status,
                                "generate %s --prompt 'Once upon a time' %s --logit-bias 243:100 "
                                "--no-echo --seed 1 --output-file %s",
                                model, runs[r], file);
        cr_assert_eq(status, 0, "%s", messages);
        snprintf(command, sizeof command, "iconv -f UTF-8 -t UTF-8 %s > /dev/null", file);
        cr_expect_eq(test_run_capture(command, &parsed), 0, "%s: not UTF-8: %s", runs[r], parsed);
        free(parsed);
        int python = python_read_jsonl(file, &parsed);
        if (python >= 0) {
            cr_expect_eq(python, 0, "%s: Python's json refused a line:\n%s", runs[r], parsed);
            if (r == 0)
                cr_expect_str_eq(parsed, "f0\n", "the exact bytes (stdout: %s)", hex_of(out, n));
            free(parsed);
        }
        if (r == 0)
            cr_expect_str_eq(hex_of(out, n), "f0");
        free(out);
        free(messages);
        compared++;
    }
    cr_assert_eq(compared, 3);
}

/* The settings of a record as a cJSON object, from the one line of file (the caller deletes
 * *record). */
static const cJSON *recorded_settings(const char *file, cJSON **record)
{
    char *json;
    test_file_bytes(file, &json);
    *record = cJSON_Parse(json);
    cr_assert_not_null(*record, "not JSON: %s", json);
    free(json);
    const cJSON *settings = cJSON_GetObjectItem(*record, "settings");
    cr_assert(cJSON_IsObject(settings), "the record has no settings");
    return settings;
}

/* The "lora" array of an --output-file record's "settings" (the caller deletes *record). */
static const cJSON *recorded_lora(const char *file, cJSON **record)
{
    const cJSON *lora = cJSON_GetObjectItem(recorded_settings(file, record), "lora");
    cr_assert(cJSON_IsArray(lora), "settings has no \"lora\" array");
    return lora;
}

/* A record names the LoRA adapters the text came from, so that the run can be repeated:
 * settings.lora holds {"path", "scale"} for each --lora, the path as it was given; without
 * --lora it is an empty array. */
Test(generate_cli, output_file_records_the_lora_adapters, .timeout = 60)
{
    SHARED_FILE_OR_SKIP(model, "models/stories260K.gguf");
    const char *dir = test_make_tmpdir();
    char adapter[256], file[256], *out, *messages;
    int status;
    snprintf(adapter, sizeof adapter, "%s/adapter.gguf", dir);
    snprintf(file, sizeof file, "%s/run.jsonl", dir);
    test_write_adapter(adapter, model, &TEST_ADAPTER);
    const char *run = "generate %s --prompt 'Once upon a time' -n 3 --seed 1 --output-file %s %s";
    char lora_flags[512];
    snprintf(lora_flags, sizeof lora_flags, "--lora %s --lora-scale 0.5", adapter);
    quill_stdout(&out, &messages, &status, run, model, file, lora_flags);
    cr_assert_eq(status, 0, "%s", messages);
    free(out);
    free(messages);
    cJSON *record;
    const cJSON *lora = recorded_lora(file, &record);
    cr_assert_eq(cJSON_GetArraySize(lora), 1);
    const cJSON *use = cJSON_GetArrayItem(lora, 0);
    cr_expect_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(use, "path")), adapter);
    cr_expect(cJSON_IsNumber(cJSON_GetObjectItem(use, "scale")));
    cr_expect_eq(cJSON_GetNumberValue(cJSON_GetObjectItem(use, "scale")), 0.5);
    cJSON_Delete(record);

    quill_stdout(&out, &messages, &status, run, model, file, "");
    cr_assert_eq(status, 0, "%s", messages);
    free(out);
    free(messages);
    lora = recorded_lora(file, &record);
    cr_expect_eq(cJSON_GetArraySize(lora), 0);
    cJSON_Delete(record);
}

/* A record also names the grammar and the guidance the text came from, as the flags gave
 * them: each a string, or null when its flag was not given. */
Test(generate_cli, output_file_records_the_grammar_and_the_guidance, .timeout = 60)
{
    SHARED_FILE_OR_SKIP(model, "models/stories260K.gguf");
    const char *dir = test_make_tmpdir();
    char file[256], *out, *messages;
    int status;
    snprintf(file, sizeof file, "%s/run.jsonl", dir);
    quill_stdout(&out, &messages, &status,
                 "generate %s --prompt 'Once upon a time' -n 3 --seed 1 --output-file %s "
                 "--grammar 'root ::= [a-z ]+' --negative-prompt 'a sad story' "
                 "--guide-strength 1.5",
                 model, file);
    cr_assert_eq(status, 0, "%s", messages);
    free(out);
    free(messages);
    cJSON *record;
    const cJSON *settings = recorded_settings(file, &record);
    cr_expect_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(settings, "grammar")),
                     "root ::= [a-z ]+");
    cr_expect_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(settings, "negative_prompt")),
                     "a sad story");
    cr_expect_eq(cJSON_GetNumberValue(cJSON_GetObjectItem(settings, "guide_strength")), 1.5);
    const char *absent[] = {"grammar_file", "json_schema", "guide", "guide_attribute",
                            "must_include"};
    int checked = 0;
    for (size_t k = 0; k < sizeof absent / sizeof *absent; k++, checked++)
        cr_expect(cJSON_IsNull(cJSON_GetObjectItem(settings, absent[k])), "%s is not null",
                  absent[k]);
    cr_assert_eq(checked, 5);
    cr_expect(cJSON_IsFalse(cJSON_GetObjectItem(settings, "json")));
    cJSON_Delete(record);
}

/* An --output-file in a directory that does not exist is one error line before anything is
 * generated: stdout stays empty. */
Test(generate_cli, an_output_file_that_cannot_be_written_fails_before_generating, .timeout = 60)
{
    SHARED_FILE_OR_SKIP(model, "models/stories260K.gguf");
    const char *dir = test_make_tmpdir();
    char *out, *messages;
    int status;
    size_t n = quill_stdout(&out, &messages, &status,
                            "generate %s --prompt 'Once upon a time' -n 5 --output-file "
                            "%s/missing/samples.jsonl", model, dir);
    cr_expect_eq(status, 1, "%s", messages);
    cr_expect_eq(n, 0, "generated before failing: %s", out);
    cr_expect_not_null(strstr(messages, "quill: error: "), "%s", messages);
    cr_expect_not_null(strstr(messages, "missing/samples.jsonl: cannot create: No such file or "
                                        "directory"), "%s", messages);
    free(out);
    free(messages);
}

/* Runs `quill chat ARGS < input` with input's lines; returns the exit status and the output
 * (stdout and stderr). */
static int chat_with_input(char **out, const char *input, const char *args)
{
    const char *dir = test_make_tmpdir();
    char path[256], command[2048];
    snprintf(path, sizeof path, "%s/input", dir);
    FILE *fp = fopen(path, "w");
    cr_assert_not_null(fp);
    fputs(input, fp);
    fclose(fp);
    snprintf(command, sizeof command, "%s chat %s < %s", test_quill_bin(), args, path);
    return test_run_capture(command, out);
}

/* Words that must appear in a chat: a turn's reply is a constrained beam search from the
 * conversation; the first, from the input alone, is quill generate --must-include's text
 * byte for byte; /set must-include= changes the words of the next turns (the second reply
 * holds the new ones), and an empty list samples again. */
Test(generate_cli, chat_must_include_searches_each_turn, .timeout = 60)
{
    SHARED_FILE_OR_SKIP(model, "models/stories260K.gguf");
    char *expected, *messages, *out, args[512];
    int status;
    quill_stdout(&expected, &messages, &status, "generate %s --no-echo -n 30 --prompt 'Once "
                 "upon a time' --must-include dragon,castle,knight", model);
    cr_assert_eq(status, 0, "%s", messages);
    snprintf(args, sizeof args, "%s -n 30 --seed 3 --must-include dragon,castle,knight", model);
    cr_assert_eq(chat_with_input(&out, "Once upon a time\n/set must-include=princess,frog\n"
                                       "The end\n/set must-include=\nShe\n", args),
                 0, "%s", out);
    char *first_end = strchr(out, '\n');
    cr_assert_not_null(first_end, "%s", out);
    cr_expect_eq((size_t)(first_end - out), strlen(expected), "%s", out);
    cr_expect_eq(strncmp(out, expected, strlen(expected)), 0, "chat:\n%s\ngenerate:\n%s", out,
                 expected);
    const char *second = strstr(out, "[must-include=princess,frog]\n");
    cr_assert_not_null(second, "%s", out);
    const char *second_end = strstr(second, "[must-include=]\n"); /* the reply ends there */
    cr_assert_not_null(second_end, "%s", out);
    char reply[1024];
    snprintf(reply, sizeof reply, "%.*s", (int)(second_end - second), second);
    for (const char *const *word = (const char *const[]){"princess", "frog", NULL}; *word; word++)
        cr_expect_not_null(strstr(reply, *word), "no %s in the second reply: %s", *word, out);
    cr_expect_null(strstr(out, "quill:"), "%s", out);
    free(expected);
    free(messages);
    free(out);
}

/* The flags of quill generate's other outputs are refused by chat, named in one line,
 * instead of being ignored. */
Test(generate_cli, chat_refuses_the_flags_it_cannot_honour, .timeout = 60)
{
    SHARED_FILE_OR_SKIP(model, "models/stories260K.gguf");
    expect_clean_error("quill chat streams one reply per turn: --beam-size, --num-samples and "
                       "--output-file are for quill generate",
                       "chat %s --beam-size 4 --num-samples 2 --output-file x.jsonl < /dev/null",
                       model);
    expect_clean_error("--output-file is for quill generate",
                       "generate %s --interactive --output-file x.jsonl < /dev/null", model);
    char *out;
    cr_expect_eq(chat_with_input(&out, "", model), 0, "%s", out);
    free(out);
}

/* --system on a model without a chat template: the same error line from chat as from
 * generate. */
Test(generate_cli, system_without_a_template_is_the_same_error_in_chat_and_generate,
     .timeout = 60)
{
    SHARED_FILE_OR_SKIP(model, "models/stories260K.gguf");
    const char *message = "--system needs a chat template, and the model has none that quill "
                          "knows";
    expect_clean_error(message, "chat %s --system 'Be brief.' < /dev/null", model);
    expect_clean_error(message, "generate %s --prompt hi --system 'Be brief.'", model);
    expect_clean_error("--chat-template 'nonsense' is not a template quill knows",
                       "chat %s --chat-template nonsense < /dev/null", model);
}

/* /status shows the settings a chat uses and not quill generate's own; /set alone lists
 * those it can change, with their values. */
Test(generate_cli, chat_status_and_set_show_what_applies, .timeout = 60)
{
    SHARED_FILE_OR_SKIP(model, "models/stories260K.gguf");
    char *out;
    int status = chat_with_input(&out, "/status\n/set\n/set num-samples=3\n", model);
    cr_assert_eq(status, 0, "%s", out);
    const char *set = strstr(out, "/set key=value changes one of these");
    cr_assert_not_null(set, "/set alone lists nothing: %s", out);
    const char *generate_only[] = {"prompt", "echo", "beam-size", "length-penalty",
                                   "num-samples", "output-file", "interactive"};
    for (int i = 0; i < 7; i++) {
        char line[64];
        snprintf(line, sizeof line, "\n  %s ", generate_only[i]);
        cr_expect_null(strstr(out, line), "'%s' in /status or /set:\n%s", generate_only[i], out);
    }
    cr_expect_not_null(strstr(out, "  temperature          0.8\n"), "%s", out);
    cr_expect_not_null(strstr(out, "  context              0\n"), "/status shows context: %s",
                       out);
    cr_expect_null(strstr(set, "  context "), "/set lists a fixed setting: %s", set);
    cr_expect_not_null(strstr(set, "  top-k                40\n"), "%s", set);
    cr_expect_not_null(strstr(out, "quill: /set num-samples: not a chat setting"), "%s", out);
    free(out);
}

static void add_chatml_template(GgufWriter *w)
{
    gguf_writer_add_str(w, "tokenizer.chat_template",
                        "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}"
                        "<|im_end|>\n{% endfor %}");
}

/* --verbose names the chat template in use and where it comes from. */
Test(generate_cli, verbose_names_the_chat_template, .timeout = 60)
{
    SHARED_FILE_OR_SKIP(model, "models/stories260K.gguf");
    const char *dir = test_make_tmpdir();
    char chatml[256], args[512], *out;
    snprintf(chatml, sizeof chatml, "%s/chatml.gguf", dir);
    test_gguf_copy(model, chatml, "tokenizer.chat_template", add_chatml_template);
    const struct {
        const char *model, *flags, *expected;
    } cases[] = {
        {model, "", "[chat template: none, the text is plain]"},
        {chatml, "", "[chat template: chatml, from the model's tokenizer.chat_template]"},
        {chatml, "--chat-template zephyr", "[chat template: zephyr, from --chat-template]"},
    };
    int compared = 0;
    for (int i = 0; i < 3; i++) {
        snprintf(args, sizeof args, "%s --verbose %s", cases[i].model, cases[i].flags);
        cr_assert_eq(chat_with_input(&out, "", args), 0, "%s", out);
        cr_expect_not_null(strstr(out, cases[i].expected), "%s:\n%s", args, out);
        free(out);
        compared++;
    }
    cr_assert_eq(compared, 3);
    cr_assert_eq(quill(&out, "generate %s --prompt hi -n 2 --verbose --system 'Be brief.'",
                       chatml), 0, "%s", out);
    cr_expect_not_null(strstr(out, "[chat template: chatml, from the model's "
                                   "tokenizer.chat_template]"), "%s", out);
    free(out);
}

/* /set seed=N reseeds the sampler: the reply is the one --seed N gives. */
Test(generate_cli, chat_set_seed_reseeds, .timeout = 60)
{
    SHARED_FILE_OR_SKIP(model, "models/stories260K.gguf");
    char args[512], *given, *set;
    snprintf(args, sizeof args, "%s --seed 5 --temperature 1 -n 30", model);
    cr_assert_eq(chat_with_input(&given, "Once upon a time\n", args), 0, "%s", given);
    snprintf(args, sizeof args, "%s --temperature 1 -n 30", model);
    cr_assert_eq(chat_with_input(&set, "/set seed=5\nOnce upon a time\n", args), 0, "%s", set);
    const char *reply = strchr(set, '\n'); /* after the line that confirms the /set */
    cr_assert_not_null(reply);
    cr_expect_str_eq(reply + 1, given);
    free(given);
    free(set);
}

/* MemAvailable of /proc/meminfo in bytes, or 0 when it cannot be read. */
static double memory_available(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    double kb = 0;
    while (f && fgets(line, sizeof line, f) && sscanf(line, "MemAvailable: %lf kB", &kb) != 1)
        ;
    if (f)
        fclose(f);
    return kb * 1024;
}

/* A context past the model's 128 trained positions is a warning; one that cannot fit in
 * memory is refused at once with its size. stories260K has 5 layers of 4 kv heads of 8:
 * 16777216 positions of f16 keys and values take 2 * 5 * 16777216 * 32 * 2 bytes = 10.74
 * GB, and attention's scores for a pass of 512 tokens over 8 heads 512 * 8 * 16777216 * 4
 * bytes = 274.9 GB more: more than any machine the tests run on has (the test skips where
 * it would fit). */
Test(generate_cli, a_context_is_checked_against_the_model_and_the_memory, .timeout = 60)
{
    SHARED_FILE_OR_SKIP(model, "models/stories260K.gguf");
    char *out, *messages;
    int status;
    quill_stdout(&out, &messages, &status,
                 "generate %s --prompt 'Once upon a time' -n 5 --context 1000 --context-shift",
                 model);
    cr_assert_eq(status, 0, "%s", messages);
    cr_expect_not_null(strstr(messages, "quill: warning: a context of 1000 positions is longer "
                                        "than the 128 the model was trained on"),
                       "%s", messages);
    free(out);
    free(messages);
    quill_stdout(&out, &messages, &status, "generate %s --prompt 'Once upon a time' -n 5",
                 model);
    cr_expect_null(strstr(messages, "warning"), "%s", messages);
    free(out);
    free(messages);
    if (memory_available() > 300e9)
        cr_skip_test("this machine has %.0f GB available: the context would fit",
                     memory_available() / 1e9);
    expect_clean_error("KV cache 10.74 GB of f16",
                       "generate %s --prompt Once -n 3 --context 16777216 --context-shift", model);
    expect_clean_error("a context of 16777216 positions would take ",
                       "chat %s --context 16777216 < /dev/null", model);
}

/* When an allocation fails anyway (here a limit on the address space, below the memory
 * available), the message gives the size that failed: a 400000-position context needs
 * 512 * 8 * 400000 * 4 bytes = 6250 MB for attention's scores alone (it said 0 MB). The
 * sanitizers' shadow memory cannot start under such a limit, so `make check` skips. */
Test(generate_cli, out_of_memory_names_the_size_that_failed, .timeout = 60)
{
#if defined(__SANITIZE_ADDRESS__)
    cr_skip_test("ulimit -v and AddressSanitizer's shadow memory do not mix");
#endif
    SHARED_FILE_OR_SKIP(model, "models/stories260K.gguf");
    if (memory_available() < 8e9)
        cr_skip_test("%.1f GB available: too little to get past the memory check",
                     memory_available() / 1e9);
    char command[1024], *out;
    snprintf(command, sizeof command,
             "ulimit -v 2000000; %s generate %s --prompt Once -n 3 --context 400000 "
             "--context-shift", test_quill_bin(), model);
    cr_assert_eq(test_run_capture(command, &out), 1, "%s", out);
    const char *at = strstr(out, "out of memory for ");
    cr_assert_not_null(at, "%s", out);
    long megabytes = strtol(at + strlen("out of memory for "), NULL, 10);
    cr_expect_geq(megabytes, 6250, "%s", out);
    free(out);
}

/* One beam is printed as a sampled text is: with --no-echo stdout holds exactly its bytes
 * (the text of its JSON line), no header; --verbose says what the search did, not the
 * sampling chain it does not use. */
Test(generate_cli, one_beam_prints_only_its_text_and_verbose_describes_the_search,
     .timeout = 60)
{
    SHARED_FILE_OR_SKIP(model, "models/stories260K.gguf");
    const char *dir = test_make_tmpdir();
    char file[256], *out, *messages, *json;
    int status;
    snprintf(file, sizeof file, "%s/beam.jsonl", dir);
    size_t n = quill_stdout(&out, &messages, &status,
                            "generate %s --prompt 'Once upon a time' --beam-size 3 -n 20 "
                            "--no-echo --verbose --output-file %s", model, file);
    cr_assert_eq(status, 0, "%s", messages);
    cr_assert_gt(n, 20, "%s", out);
    cr_expect_null(strstr(out, "---"), "a header on stdout: %s", out);
    cr_expect_neq(out[n - 1], '\n', "a newline added to a pipe: %s", out);
    size_t len;
    Error err;
    cr_assert_eq(file_read_all(file, &json, &len, &err), 0, "%s", err.msg);
    char expected[512];
    snprintf(expected, sizeof expected, "{\"text\":\"%s\",", out);
    cr_expect_not_null(strstr(json, expected), "stdout %s, JSON %s", out, json);
    cr_expect_not_null(strstr(messages, "[beam search: 3 beams, length penalty 1"), "%s",
                       messages);
    cr_expect_null(strstr(messages, "random draw"), "%s", messages);
    cr_expect_null(strstr(messages, "[generated:"), "%s", messages);
    cr_expect_not_null(strstr(messages, "[the best beam: score "), "%s", messages);
    free(out);
    free(messages);
    free(json);
}

/* ---- on a terminal ------------------------------------------------------------------------ */

/* On a terminal the output ends with a newline, so that the shell's prompt starts a line
 * of its own (in a pipe, stdout holds exactly the bytes: no_echo_greedy_output_is_...). */
Test(generate_cli, on_a_terminal_the_output_ends_with_a_newline, .timeout = 60)
{
    SHARED_FILE_OR_SKIP(model, "models/stories260K.gguf");
    const char *runs[] = {"", "--beam-size 2"};
    for (int i = 0; i < 2; i++) {
        TestProcess p;
        test_process_start(&p, true, "generate %s --prompt 'Once upon a time' -n 5 "
                                     "--temperature 0 %s", model, runs[i]);
        cr_assert_eq(test_process_finish(&p), 0, "%s", p.seen);
        cr_expect_str_eq(p.seen, "Once upon a time, there was a little\r\n", "%s", runs[i]);
    }
}

/* Chat on a terminal: Ctrl+C with text typed drops the line and gives a new prompt, as a
 * shell does (the reply to the next line is that of a fresh conversation: nothing of the
 * dropped line went in); Ctrl+D leaves with the cursor on a new line; Ctrl+C on an empty
 * line leaves too. */
Test(generate_cli, chat_on_a_terminal_ctrl_c_drops_a_line_and_the_end_leaves_a_clean_line,
     .timeout = 60)
{
    SHARED_FILE_OR_SKIP(model, "models/stories260K.gguf");
    TestProcess p;
    test_process_start(&p, true, "chat %s -n 5 --temperature 0", model);
    cr_assert(test_process_wait_for(&p, 0, "\n> "), "no prompt: %s", p.seen);
    test_process_wait_for_line_editing(&p);
    test_process_type(&p, "Once upon");
    cr_assert(test_process_wait_for(&p, 0, "> Once upon"), "%s", p.seen);
    test_process_type(&p, "\x03");
    size_t dropped = p.n_seen;
    cr_assert(test_process_wait_for(&p, 0, "Once upon^C\r\n> "),
              "Ctrl+C did not drop the line: %s", p.seen);
    test_process_wait_for_line_editing(&p);
    test_process_type(&p, "Once upon a time\r");
    cr_assert(test_process_wait_for(&p, dropped, "Once upon a time\r\n, there was a little\r\n> "),
              "%s", p.seen);
    test_process_wait_for_line_editing(&p);
    test_process_type(&p, "\x04");
    cr_expect_eq(test_process_finish(&p), 0, "%s", p.seen);
    cr_expect(p.n_seen > 0 && p.seen[p.n_seen - 1] == '\n', "Ctrl+D left: %s", p.seen);
    test_process_start(&p, true, "chat %s", model);
    cr_assert(test_process_wait_for(&p, 0, "\n> "), "no prompt: %s", p.seen);
    test_process_wait_for_line_editing(&p);
    test_process_type(&p, "\x03");
    cr_expect_eq(test_process_finish(&p), 0, "%s", p.seen);
    cr_expect(p.seen[p.n_seen - 1] == '\n', "Ctrl+C on an empty line left: %s", p.seen);
}

/* A full context is said as advice: whose context it is, after how many tokens, and what
 * keeps the text going. stories260K holds 128 positions; the prompt takes 5 (bos and 4),
 * so 123 tokens fit after it and one more comes from the last logits. */
Test(generate_cli, a_full_context_says_what_keeps_going, .timeout = 60)
{
    SHARED_FILE_OR_SKIP(model, "models/stories260K.gguf");
    char *out, *messages;
    int status;
    quill_stdout(&out, &messages, &status, "generate %s --prompt 'Once upon a time' -n 300 "
                                           "--ignore-eos --temperature 0", model);
    cr_assert_eq(status, 0, "%s", messages);
    cr_expect_str_eq(messages, "quill: the model's context of 128 positions is full after 124 "
                               "tokens; --context-shift keeps going\n");
    free(out);
    free(messages);
}

/* --bad-words keeps each word out of the text in both of its spellings: greedy decoding of
 * stories260K names "Lily" after a space, and with "Lily" banned the same run never writes
 * it (the library's sampler_bad_word_add tokenizes the list, as quill_sampler_new does). */
Test(generate_cli, bad_words_keep_a_word_out_of_the_text, .timeout = 60)
{
    SHARED_FILE_OR_SKIP(model, "models/stories260K.gguf");
    const char *run = "generate %s --prompt 'Once upon a time' -n 40 --temperature 0 --no-echo%s";
    char *text, *messages;
    int status;
    quill_stdout(&text, &messages, &status, run, model, "");
    cr_assert_eq(status, 0, "%s", messages);
    cr_assert(strstr(text, " Lily"), "the greedy text names no Lily: %s", text);
    free(text);
    free(messages);
    quill_stdout(&text, &messages, &status, run, model, " --bad-words Lily,Tom");
    cr_assert_eq(status, 0, "%s", messages);
    cr_expect(!strstr(text, "Lily") && !strstr(text, "Tom"), "banned words written: %s", text);
    cr_expect(strlen(text) > 20, "the text stopped short: '%s'", text);
    free(text);
    free(messages);
}

/* /reset forgets the conversation and starts the random draw again from the seed, so the
 * same input after it gets the reply a fresh chat gets (before, the draw went on and the
 * reply differed). */
Test(generate_cli, chat_reset_starts_the_draw_again, .timeout = 60)
{
    SHARED_FILE_OR_SKIP(model, "models/stories260K.gguf");
    char args[512], *out;
    snprintf(args, sizeof args, "%s --seed 11 --temperature 1.5 -n 30", model);
    cr_assert_eq(chat_with_input(&out, "Once\n/reset\nOnce\n", args), 0, "%s", out);
    char *mark = strstr(out, "[the conversation is forgotten]\n");
    cr_assert_not_null(mark, "%s", out);
    size_t first = (size_t)(mark - out);
    const char *again = mark + strlen("[the conversation is forgotten]\n");
    cr_expect_eq(strlen(again), first, "replies of %zu and %zu bytes:\n%s", first,
                 strlen(again), out);
    cr_expect(strncmp(out, again, first) == 0, "the reply after /reset differs:\n%s", out);
    free(out);
}

/* DRY as llama.cpp's llama-cli runs it: greedy decoding of stories260K for 400 tokens, long
 * enough for the story to start repeating itself, with DRY on (a 128-token window, which is
 * what llama-cli's -1 means for this model: its training context), gives the same text as
 * llama-cli's with the same settings, for the default breakers, none, and two others.
 * Without DRY the text differs (the test would pass with a DRY that does nothing otherwise).
 * A breaker whose tokens span words ("mom said") is left out: llama.cpp tokenizes the rest
 * of a breaker with SentencePiece's space prefix (" said" as "▁▁said"), so on stories260K
 * such a breaker never matches there, and does in quill (docs/sampling.md). */
Test(generate_cli, dry_text_is_llama_cpps, .timeout = 300)
{
    SHARED_FILE_OR_SKIP(model, "models/stories260K.gguf");
    LLAMA_CPP_TOOL_OR_SKIP(llama_cli, "llama-cli");
    const char *settings[] = {
        "--dry-multiplier 0.8 --dry-penalty-last-n 128",
        "--dry-multiplier 0.8 --dry-base 1.5 --dry-allowed-length 3 --dry-penalty-last-n 128 "
        "--dry-sequence-breaker none",
        "--dry-multiplier 1.5 --dry-penalty-last-n 128 --dry-sequence-breaker Lily "
        "--dry-sequence-breaker '.'",
        "", /* no DRY: must differ from the first */
    };
    char *first = NULL;
    int compared = 0;
    for (int i = 0; i < 4; i++) {
        char command[8192], *theirs = NULL, *ours, *messages;
        int status;
        snprintf(command, sizeof command,
                 "{ %s -m %s -p 'Once upon a time' -n 400 --temp 0 -no-cnv -t 2 -c 512 -ctk f32 "
                 "-ctv f32 --no-warmup --seed 1 %s < /dev/null 2> /dev/null; }",
                 llama_cli, model, settings[i]);
        if (i < 3)
            cr_assert_eq(test_run_capture(command, &theirs), 0, "llama-cli failed: %s", theirs);
        quill_stdout(&ours, &messages, &status, "generate %s --prompt 'Once upon a time' -n 400 "
                     "--temperature 0 --context 512 --cache-type f32 %s", model, settings[i]);
        cr_assert_eq(status, 0, "%s", messages);
        size_t len = strlen(ours);
        cr_assert_geq(len, 900, "quill stopped short: %s", ours);
        if (i < 3) {
            const char *text = theirs + (theirs[0] == ' '); /* the prompt's space shown */
            cr_expect_eq(strncmp(ours, text, len), 0, "%s:\nquill:     %s\nllama.cpp: %s",
                         settings[i], ours, text);
            compared++;
        } else {
            cr_expect_neq(strcmp(ours, first), 0, "DRY changed nothing");
        }
        if (i == 0)
            first = strdup(ours);
        free(theirs);
        free(ours);
        free(messages);
    }
    cr_expect_eq(compared, 3);
    free(first);
}

/* The DRY settings are checked where they are read: each bad value is one message naming
 * the flag, and --verbose shows DRY in the chain with the breakers found. */
Test(generate_cli, dry_flags_are_checked_and_shown, .timeout = 60)
{
    SHARED_FILE_OR_SKIP(model, "models/stories260K.gguf");
    const char *run = "generate %s --prompt 'Once' -n 2 --temperature 0 %s";
    expect_clean_error("--dry-base", run, model, "--dry-base 0.5");
    expect_clean_error("--dry-penalty-last-n", run, model, "--dry-penalty-last-n -2");
    expect_clean_error("--dry-sequence-breaker: an empty breaker", run, model,
                       "--dry-multiplier 1 --dry-sequence-breaker ''");
    expect_clean_error("1 to 40 bytes", run, model,
                       "--dry-multiplier 1 --dry-sequence-breaker "
                       "0123456789012345678901234567890123456789x");
    expect_clean_error("--min-keep", run, model, "--min-keep -1");
    const char *shown[][2] = {
        {"--dry-multiplier 0.8", "dry (multiplier 0.8, base 1.75, allowed length 2, last -1 "
                                 "tokens, "},
        {"--dry-multiplier 0.8 --dry-sequence-breaker none", "last -1 tokens, 0 breakers)"},
        {"--dry-multiplier 0.8 --dry-sequence-breaker x --dry-sequence-breaker none", "0 breakers)"},
        {"", "dry off"},
    };
    for (int i = 0; i < 4; i++) {
        char *out, *messages, args[256];
        int status;
        snprintf(args, sizeof args, "--verbose %s", shown[i][0]);
        quill_stdout(&out, &messages, &status, run, model, args);
        cr_assert_eq(status, 0, "%s", messages);
        cr_expect(strstr(messages, shown[i][1]), "%s: no \"%s\" in %s", shown[i][0], shown[i][1],
                  messages);
        free(out);
        free(messages);
    }
}

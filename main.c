/* quill: the command dispatcher. It reads the subcommand and calls the function that
 * train/ or generate/ exports for it; those return 0, or -1 with a one-line message,
 * which is printed here as "quill: error: <message>" with exit status 1, or an exit status
 * of their own (quill train's 130 after Ctrl-C). */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "generate/generate.h"
#include "generate/serve.h"
#include "loader.h"
#include "train/train.h"

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv, Error *err);
    const char *summary;
} Command;

static const Command COMMANDS[] = {
    {"train", cmd_train, "train a model on text files (or --resume a run)"},
    {"finetune", cmd_finetune, "train a LoRA adapter on a frozen GGUF model (any type)"},
    {"generate", cmd_generate, "generate text from a GGUF model"},
    {"chat", cmd_chat, "talk to a model: a prompt loop (generate --interactive)"},
    {"serve", cmd_serve, "serve a model over HTTP: OpenAI's and llama-server's endpoints"},
    {"tokenize", cmd_tokenize, "print the token ids of a text"},
    {"grammar", cmd_grammar, "check texts against a GBNF grammar or a JSON Schema, no model"},
    {"eval", cmd_eval, "loss and perplexity of a model on a text file"},
    {"info", cmd_info, "a GGUF file's config, parameter count and tensors"},
    {"quantize", cmd_quantize, "rewrite a GGUF model's weights in another type (Q8_0, Q4_K_M, ...)"},
    {"merge", cmd_merge, "write a LoRA adapter into a GGUF model's weights"},
    {"plot", cmd_plot, "draw the training curves of run directories as an SVG"},
    {"bench", cmd_bench, "training throughput, or a model's speed (quill bench MODEL.gguf)"},
    {"bench-data", cmd_bench_data, "the data pipeline (words, BPE, token cache) on a generated corpus"},
};
enum { N_COMMANDS = sizeof COMMANDS / sizeof *COMMANDS };

static void usage(FILE *out)
{
    fprintf(out, "usage: quill <command> [options]   (quill <command> --help for its options)\n\n"
                 "commands:\n");
    for (int i = 0; i < N_COMMANDS; i++)
        fprintf(out, "  %-10s %s\n", COMMANDS[i].name, COMMANDS[i].summary);
}

/* `quill bench MODEL` measures a model's inference speed (MODEL: a GGUF file or a run
 * directory); `quill bench` alone (or with training configs) measures training. */
static bool names_a_model(int argc, char **argv)
{
    for (int i = 0; i < argc; i++)
        if (argv[i][0] != '-' && model_path_names_model(argv[i]))
            return true;
    return false;
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 1 : 0;
    }
    for (int i = 0; i < N_COMMANDS; i++) {
        if (strcmp(argv[1], COMMANDS[i].name) != 0)
            continue;
        Error err = {{0}};
        int (*run)(int, char **, Error *) = COMMANDS[i].run;
        if (run == cmd_bench && names_a_model(argc - 2, argv + 2))
            run = cmd_bench_model;
        int status = run(argc - 1, argv + 1, &err);
        if (status >= 0) /* 0, or an exit status the command chose (train's after Ctrl-C) */
            return status;
        fflush(stdout);
        /* an empty message: the error was reported already (by another MPI rank) */
        if (err.msg[0])
            fprintf(stderr, "quill: error: %s\n", err.msg);
        return 1;
    }
    fprintf(stderr, "quill: error: unknown command '%s' (see quill --help)\n", argv[1]);
    return 1;
}

/*
 * libquill as koffi sees it: the library found and opened, the structs of include/quill.h
 * laid out field by field (koffi follows the C ABI's alignment and padding), and each
 * function the binding calls declared with its C prototype. Both threads load this module:
 * the main thread for quick calls (metadata, tokens, making contexts) and each context's
 * engine thread (engine.js) for decoding.
 */
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

import koffi from "koffi";

/* Where libquill.so is: $QUILL_LIBRARY, then the checkout's lib/ (the binding used from
 * the source tree after `make`), then the loader's search path (where `make install`
 * put it: /usr/local/lib by default). */
function libraryPath() {
  if (process.env.QUILL_LIBRARY) return process.env.QUILL_LIBRARY;
  const inTree = fileURLToPath(new URL("../../lib/libquill.so", import.meta.url));
  return existsSync(inTree) ? inTree : "libquill.so.0";
}

export const LIBRARY = libraryPath();

/* Pinned for the life of the process. koffi unloads a library once nothing in JS refers to
 * it (an engine thread ending, the process exiting), but libquill's OpenMP threads (the
 * pool libgomp starts at the first parallel loop) outlive every call: unloading libquill
 * unloads libgomp from under them, and they crash as they exit (seen: one exit in ten).
 * dlopen's RTLD_NODELETE keeps the library, and so what it needs, mapped. */
const RTLD_NOW = 0x2;
const RTLD_NODELETE = 0x1000;
const dlopen = koffi.load("libc.so.6").func("void *dlopen(const char *file, int mode)");
dlopen(LIBRARY, RTLD_NOW | RTLD_NODELETE);

const lib = koffi.load(LIBRARY);

koffi.opaque("quill_model");
koffi.opaque("quill_context");
koffi.opaque("quill_sampler");
koffi.opaque("quill_lora");

koffi.struct("quill_model_params", { n_threads: "int", use_mmap: "bool", vocab_only: "bool" });

koffi.struct("quill_context_params", {
  n_ctx: "int", n_seq: "int", n_batch: "int", n_threads: "int", cache_type: "int",
});

koffi.struct("quill_perf", {
  n_prompt_tokens: "int", prompt_seconds: "double", n_generated: "int",
  generate_seconds: "double", first_token_seconds: "double",
});

koffi.struct("quill_chat_message", { role: "const char *", content: "const char *" });

koffi.struct("quill_logit_bias", { token: "int32_t", bias: "float" });

koffi.struct("quill_sampler_params", {
  temperature: "float", top_k: "int", top_p: "float", min_p: "float", typical_p: "float",
  repeat_penalty: "float", frequency_penalty: "float", presence_penalty: "float",
  repeat_last_n: "int", penalize_prompt: "bool", chain: "const char *", seed: "uint64_t",
  logit_bias: "quill_logit_bias *", n_logit_bias: "int",
  bad_words: "const char **", n_bad_words: "int",
  /* added later at the end of the C struct, which keeps the fields above */
  xtc_probability: "float", xtc_threshold: "float", top_n_sigma: "float",
  dynatemp_range: "float", dynatemp_exponent: "float", mirostat: "int", mirostat_tau: "float",
  mirostat_eta: "float", grammar: "const char *", dry_multiplier: "float", dry_base: "float",
  dry_allowed_length: "int", dry_penalty_last_n: "int", dry_sequence_breakers: "const char **",
  n_dry_sequence_breakers: "int", min_keep: "int", json_schema: "const char *",
});

/* The event's piece and text are not NUL-terminated (a piece may end inside a UTF-8
 * character): they are read as bytes, n_piece and n_text of them, so they stay pointers. */
export const TokenEvent = koffi.struct("quill_token_event", {
  token: "int32_t", piece: "void *", n_piece: "size_t", text: "void *", n_text: "size_t",
  logprob: "float",
});

export const TokenCallback = koffi.proto(
  "bool quill_token_callback(const quill_token_event *ev, void *user)");

koffi.struct("quill_generate_params", {
  max_tokens: "int", stop: "const char **", n_stop: "int", ignore_eos: "bool",
  add_special: "bool", parse_special: "bool", context_shift: "bool", n_keep: "int", seq: "int",
  cancel: "int *", on_token: "quill_token_callback *", user: "void *",
  // classifier-free guidance, added at the end of the struct in quill.h
  guide: "const char *", negative_prompt: "const char *", guidance_scale: "float",
  guidance_seq: "int",
});

koffi.struct("quill_beam_params", {
  beam_size: "int", length_penalty: "float", n_best: "int", max_tokens: "int",
  stop: "const char **", n_stop: "int", ignore_eos: "bool", add_special: "bool",
  parse_special: "bool",
  /* added later at the end of the C struct, which keeps the fields above */
  must_include: "const char **", n_must_include: "int",
});

export const BeamResult = koffi.struct("quill_beam_result", {
  text: "void *", n_text: "size_t", score: "double", n_tokens: "int", finish: "int",
  /* added later at the end of the C struct, which keeps the fields above */
  missed: "uint64_t",
});

const declarations = [
  "const char *quill_version(void)",
  "const char *quill_cpu_features(void)",
  "const char *quill_last_error(void)",
  "int quill_last_error_kind(void)",

  "quill_model_params quill_model_params_default(void)",
  "quill_model *quill_model_load(const char *path, const quill_model_params *p)",
  "void quill_model_free(quill_model *m)",
  "const char *quill_model_architecture(const quill_model *m)",
  "const char *quill_model_name(const quill_model *m)",
  "int quill_model_vocab_size(const quill_model *m)",
  "int quill_model_context_length(const quill_model *m)",
  "int quill_model_embedding_size(const quill_model *m)",
  "int quill_model_layers(const quill_model *m)",
  "uint64_t quill_model_parameter_count(const quill_model *m)",
  "const char *quill_model_chat_template(const quill_model *m)",
  "int quill_model_describe(const quill_model *m, _Out_ uint8_t *buf, size_t cap)",

  "int quill_tokenize(const quill_model *m, const char *text, size_t len, bool add_special, " +
    "bool parse_special, _Out_ int32_t *tokens, int cap)",
  "int quill_detokenize(const quill_model *m, const int32_t *tokens, int n, " +
    "_Out_ uint8_t *buf, size_t cap)",
  "int32_t quill_token_bos(const quill_model *m)",
  "int32_t quill_token_eos(const quill_model *m)",
  "int quill_chat_format(const quill_model *m, const char *template_name, " +
    "const quill_chat_message *msgs, int n, bool add_generation_prompt, " +
    "_Out_ uint8_t *buf, size_t cap)",

  "quill_context_params quill_context_params_default(void)",
  "quill_context *quill_context_new(quill_model *m, const quill_context_params *p)",
  "void quill_context_free(quill_context *c)",
  "int quill_context_n_ctx(const quill_context *c)",
  "int quill_context_n_seq(const quill_context *c)",
  "quill_perf quill_context_perf(const quill_context *c)",
  "int quill_seq_clear(quill_context *c, int seq)",
  "int quill_embed(quill_context *c, int seq, const int32_t *tokens, int n, int pooling, " +
    "bool normalize, _Out_ float *out)",

  "quill_lora *quill_lora_load(const quill_model *m, const char *path)",
  "void quill_lora_free(quill_lora *a)",
  "int quill_context_set_lora(quill_context *c, quill_lora **adapters, const float *scales, " +
    "int n)",

  "quill_sampler_params quill_sampler_params_default(void)",
  "int quill_sampler_params_preset(_Inout_ quill_sampler_params *p, const char *name)",
  "quill_sampler *quill_sampler_new(const quill_model *m, const quill_sampler_params *p)",
  "void quill_sampler_free(quill_sampler *s)",

  "const char *quill_finish_reason_name(int r)",
  "quill_generate_params quill_generate_params_default(void)",
  "int quill_generate(quill_context *c, quill_sampler *s, const char *prompt, " +
    "const quill_generate_params *p, _Out_ int *finish)",
  "quill_beam_params quill_beam_params_default(void)",
  "int quill_beam_search(quill_context *c, quill_sampler *s, const char *prompt, " +
    "const quill_beam_params *p, quill_beam_result *out, int cap)",
  "void quill_beam_results_free(quill_beam_result *r, int n)",
];

/* C.quill_model_load(...) and so on: each function by its C name. */
export const C = Object.fromEntries(declarations.map((prototype) => {
  const fn = lib.func(prototype);
  return [fn.info.name, fn];
}));

/* The names of quill_error_kind, by value. */
const ERROR_KINDS = ["none", "file", "parameter", "context", "memory"];

/* The failure this thread's last call left: { message, kind }. Read on the thread that
 * made the call: the library keeps it per thread. */
export function lastError() {
  return { message: C.quill_last_error(), kind: ERROR_KINDS[C.quill_last_error_kind()] ?? "none" };
}

/* Text written by a call that follows snprintf's convention (the whole result's byte count
 * returned, at most cap bytes written, NUL-terminated): called once with a guess, and once
 * more with room for all of it when the guess was short. Returns the bytes as a Buffer, or
 * null when the call failed. */
export function snprintfBytes(call, guess = 256) {
  let buf = Buffer.alloc(guess);
  let n = call(buf, buf.length);
  if (n < 0) return null;
  if (n >= buf.length) {
    buf = Buffer.alloc(n + 1);
    n = call(buf, buf.length);
    if (n < 0) return null;
  }
  return buf.subarray(0, n);
}

/* The token ids of a text (add_special: a bos first where the model wants one), or null
 * when the library refused it; the call is repeated with room for all of them when the
 * first guess (one token per byte, plus a bos) is short. */
export function tokenize(model, text, addSpecial = true, parseSpecial = false) {
  const bytes = Buffer.from(text, "utf8");
  let tokens = new Int32Array(bytes.length + 1);
  for (;;) {
    const n = C.quill_tokenize(model, bytes, bytes.length, addSpecial, parseSpecial, tokens,
                               tokens.length);
    if (n < 0) return null;
    if (n <= tokens.length) return tokens.subarray(0, n);
    tokens = new Int32Array(n);
  }
}

/* Bytes in C memory, copied into a Buffer of their own. */
export function copyBytes(pointer, n) {
  return n === 0 ? Buffer.alloc(0) : Buffer.from(koffi.view(pointer, n).slice(0));
}

export { koffi };

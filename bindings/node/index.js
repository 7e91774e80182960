/*
 * quill for Node.js: libquill (include/quill.h) through koffi, in JavaScript's style.
 *
 *   const model = await Model.load("stories260K.gguf");
 *   const context = new Context(model, { nCtx: 256 });
 *   const { text } = await context.generate("Once upon a time", { maxTokens: 32 });
 *   for await (const piece of context.stream("Once", { maxTokens: 32 })) write(piece);
 *
 * The quick calls (metadata, tokens, making a context) run on the calling thread. The slow
 * ones (loading, generating, beam search, embedding) run on an engine thread of the
 * context's own (engine.js says why one of our own), so the event loop keeps turning
 * while a model writes; they return promises. A failure is a QuillError carrying the
 * library's message and its kind.
 *
 * Memory: close() frees a model or a context at once; what is not closed is freed when
 * the garbage collector finds it unreachable (a FinalizationRegistry). A model's memory
 * outlives close() until the last of its contexts and adapters is freed, since they read
 * its weights; an adapter's, until no context applies it.
 */
import { randomInt } from "node:crypto";
import { Worker } from "node:worker_threads";

import { C, LIBRARY, koffi, lastError, snprintfBytes, tokenize } from "./ffi.js";

/* A failure the library (or the binding, checking its arguments) reported. kind is the
 * library's quill_error_kind by name: "file" (a file missing or not a model), "parameter"
 * (an argument out of range or of the wrong kind), "context" (the context cannot take the
 * request, or is closed), "memory" (out of memory). */
export class QuillError extends Error {
  constructor(message, kind) {
    super(message);
    this.name = "QuillError";
    this.kind = kind;
  }
}

/* The error of the call this thread just made, as a QuillError. */
const libraryError = () => {
  const { message, kind } = lastError();
  return new QuillError(message, kind);
};

export const version = () => C.quill_version();
export const cpuFeatures = () => C.quill_cpu_features();
export const libraryPath = LIBRARY;

/* ---- the engine thread, seen from the main thread ---------------------------------- */

const ENGINE_URL = new URL("./engine.js", import.meta.url);

/* A worker thread running engine.js: jobs posted in order, each a promise settled by the
 * worker's answer. The thread keeps the process alive only while a job is in flight. */
class Engine {
  /* No execArgv: the engine needs none of node's flags, and some of the script's (such as
   * --input-type for `node -e`) are refused in a worker. */
  #worker = new Worker(ENGINE_URL, { execArgv: [] });
  #jobs = new Map();
  #nextId = 0;

  constructor() {
    this.#worker.unref();
    this.#worker.on("message", (message) => this.#receive(message));
    this.#worker.on("error", (e) => this.#failAll(new QuillError(e.message, "none")));
  }

  /* Runs op(args) on the engine thread; onPiece(text) sees a stream's pieces. */
  run(op, args, onPiece = null) {
    return new Promise((resolve, reject) => {
      const id = this.#nextId++;
      this.#jobs.set(id, { resolve, reject, onPiece });
      if (this.#jobs.size === 1) this.#worker.ref();
      this.#worker.postMessage({ id, op, args });
    });
  }

  get busy() {
    return this.#jobs.size > 0;
  }

  /* Resolves once every job posted so far has settled: the engine answers in order. */
  idle() {
    return this.busy ? this.run("noop", {}) : Promise.resolve();
  }

  /* Ends the thread once it has answered what it was given: it releases its callback's
   * slot in koffi first (terminate() would leave it taken). */
  end() {
    this.#worker.postMessage({ op: "end" });
  }

  #receive({ id, piece, result, error }) {
    const job = this.#jobs.get(id);
    if (piece) return job.onPiece(piece);
    this.#jobs.delete(id);
    if (this.#jobs.size === 0) this.#worker.unref();
    if (error) job.reject(new QuillError(error.message, error.kind));
    else job.resolve(result);
  }

  #failAll(error) {
    for (const job of this.#jobs.values()) job.reject(error);
    this.#jobs.clear();
  }
}

/* Idle engines, kept for the next context or load: a thread takes tens of milliseconds to
 * start, and each one that loads koffi keeps some of its memory after it ends (measured
 * here: about 90 KB), so a program that makes and closes contexts in a loop reuses a few. */
const idleEngines = [];
const IDLE_ENGINES_KEPT = 4;

const takeEngine = () => idleEngines.pop() ?? new Engine();

function giveBackEngine(engine) {
  if (idleEngines.length < IDLE_ENGINES_KEPT) idleEngines.push(engine);
  else engine.end();
}

/* ---- options ------------------------------------------------------------------------- */

/* Options are checked by name, so that a misspelt one (max_tokens for maxTokens) is an
 * error rather than silently ignored. */
function checkOptions(options, known, what) {
  if (options === null || typeof options !== "object")
    throw new QuillError(`${what}: options must be an object`, "parameter");
  for (const name of Object.keys(options))
    if (!known.includes(name))
      throw new QuillError(`${what}: unknown option '${name}' (it takes ${known.join(", ")})`,
                           "parameter");
}

/* The ranges `quill generate` accepts for each sampling flag (generate/options.c). The
 * library takes any float (temperature -1 is greedy to it), so a value the command line
 * would refuse is refused here, with the command line's words. */
const SAMPLER_RANGES = {
  temperature: [0, 100], topK: [0, 2 ** 24], topP: [0, 1], minP: [0, 1], typicalP: [0, 1],
  repeatPenalty: [0, 100], repeatLastN: [-1, 2 ** 24], frequencyPenalty: [-100, 100],
  presencePenalty: [-100, 100], xtcProbability: [0, 1], xtcThreshold: [0, 1],
  topNSigma: [-1, 100], dynatempRange: [0, 100], dynatempExponent: [0, 100], mirostat: [0, 2],
  mirostatTau: [0, 100], mirostatEta: [0, 100], minKeep: [0, 2 ** 24], dryMultiplier: [0, 100],
  dryBase: [1, 100], dryAllowedLength: [0, 2 ** 24], dryPenaltyLastN: [-1, 2 ** 24],
};

function inRange(value, option) {
  const [low, high] = SAMPLER_RANGES[option];
  if (value < low || value > high)
    throw new QuillError(`${option} ${value} is out of range [${low}, ${high}]`, "parameter");
  return value;
}

/* The numeric sampler options and their fields in quill_sampler_params (C floats). */
const SAMPLER_NUMBERS = {
  temperature: "temperature", topP: "top_p", minP: "min_p", typicalP: "typical_p",
  repeatPenalty: "repeat_penalty", frequencyPenalty: "frequency_penalty",
  presencePenalty: "presence_penalty", xtcProbability: "xtc_probability",
  xtcThreshold: "xtc_threshold", topNSigma: "top_n_sigma", dynatempRange: "dynatemp_range",
  dynatempExponent: "dynatemp_exponent", mirostatTau: "mirostat_tau",
  mirostatEta: "mirostat_eta", dryMultiplier: "dry_multiplier", dryBase: "dry_base",
};
/* ... and those that are C ints. */
const SAMPLER_INTEGERS = {
  topK: "top_k", repeatLastN: "repeat_last_n", mirostat: "mirostat", minKeep: "min_keep",
  dryAllowedLength: "dry_allowed_length", dryPenaltyLastN: "dry_penalty_last_n",
};
const SAMPLER_OPTIONS = [...Object.keys(SAMPLER_NUMBERS), ...Object.keys(SAMPLER_INTEGERS),
                         "penalizePrompt", "preset", "seed", "samplers", "logitBias", "badWords",
                         "grammar", "drySequenceBreakers", "jsonSchema"];

function number(value, name) {
  if (typeof value !== "number") throw new QuillError(`${name} must be a number`, "parameter");
  return value;
}

/* A value as an error message shows it: a string in quotes ("5" is not 5). */
const shown = (value) => (typeof value === "string" ? JSON.stringify(value) : String(value));

/* A value for a C int: koffi would otherwise truncate 1.5, or wrap 2^32. */
function integer(value, name) {
  if (!Number.isInteger(value) || value < -(2 ** 31) || value >= 2 ** 31)
    throw new QuillError(`${name} must be an integer (a C int), not ${shown(value)}`,
                         "parameter");
  return value;
}

/* logitBias as { token: bias }, a Map or [[token, bias], ...]: quill_logit_bias rows. */
function logitBiasRows(logitBias) {
  const entries = logitBias instanceof Map || Array.isArray(logitBias)
    ? [...logitBias] : Object.entries(logitBias);
  return entries.map(([token, bias]) => ({
    token: integer(Number(token), "a logitBias token"), bias: number(bias, "a logitBias bias"),
  }));
}

/* A string or a list of them (stop strings, bad words, sampler names). Checked here: a
 * number where C expects a char pointer would be read as an address. */
function strings(value, name) {
  const list = value === undefined ? [] : [value].flat();
  for (const s of list)
    if (typeof s !== "string") throw new QuillError(`${name} must be strings`, "parameter");
  return list;
}

function string(value, name) {
  if (typeof value !== "string") throw new QuillError(`${name} must be a string`, "parameter");
  return value;
}

/* jsonSchema: a JSON Schema as an object (or true/false), or its JSON text. */
function jsonSchemaText(schema) {
  if (typeof schema === "string") return schema;
  if (typeof schema === "boolean" || (schema !== null && typeof schema === "object"))
    return JSON.stringify(schema);
  throw new QuillError("jsonSchema must be a JSON Schema (an object or its JSON text)",
                       "parameter");
}

/* The seed: a non-negative integer (a Number or a BigInt) below 2^64. */
function seed(value) {
  if ((typeof value === "number" && Number.isSafeInteger(value) && value >= 0) ||
      (typeof value === "bigint" && value >= 0n && value < 2n ** 64n))
    return BigInt(value);
  throw new QuillError(`seed must be an integer from 0 to 2^64 - 1, not ${shown(value)}`,
                       "parameter");
}

/* quill_sampler_params from the options: the library's defaults, then the preset (as the
 * CLI applies --preset before the other flags), then each option given. Without a seed,
 * a random one, as the CLI's default (-1) draws. */
function samplerParams(options) {
  const p = C.quill_sampler_params_default();
  if (options.preset !== undefined &&
      C.quill_sampler_params_preset(p, string(options.preset, "preset")) !== 0)
    throw libraryError();
  for (const [option, field] of Object.entries(SAMPLER_NUMBERS))
    if (options[option] !== undefined)
      p[field] = inRange(number(options[option], option), option);
  for (const [option, field] of Object.entries(SAMPLER_INTEGERS))
    if (options[option] !== undefined)
      p[field] = inRange(integer(options[option], option), option);
  if (options.penalizePrompt !== undefined) p.penalize_prompt = Boolean(options.penalizePrompt);
  p.seed = options.seed === undefined ? randomInt(2 ** 32) : seed(options.seed);
  if (options.samplers !== undefined) p.chain = strings(options.samplers, "samplers").join(",");
  if (options.grammar !== undefined) p.grammar = string(options.grammar, "grammar");
  if (options.jsonSchema !== undefined) p.json_schema = jsonSchemaText(options.jsonSchema);
  const bias = options.logitBias === undefined ? [] : logitBiasRows(options.logitBias);
  [p.logit_bias, p.n_logit_bias] = [bias.length ? bias : null, bias.length];
  const bad = strings(options.badWords, "badWords");
  [p.bad_words, p.n_bad_words] = [bad.length ? bad : null, bad.length];
  if (options.drySequenceBreakers !== undefined) { /* otherwise the library's defaults */
    const breakers = strings(options.drySequenceBreakers, "drySequenceBreakers");
    [p.dry_sequence_breakers, p.n_dry_sequence_breakers] =
      [breakers.length ? breakers : null, breakers.length];
  }
  return p;
}

/* The stop strings, the end-of-text and prompt switches both decoders share. */
const TEXT_OPTIONS = ["maxTokens", "stop", "ignoreEos", "addSpecial", "parseSpecial"];

function textParams(p, options) {
  if (options.maxTokens !== undefined) p.max_tokens = integer(options.maxTokens, "maxTokens");
  const stop = strings(options.stop, "stop");
  [p.stop, p.n_stop] = [stop.length ? stop : null, stop.length];
  for (const [option, field] of [["ignoreEos", "ignore_eos"], ["addSpecial", "add_special"],
                                 ["parseSpecial", "parse_special"]])
    if (options[option] !== undefined) p[field] = Boolean(options[option]);
  return p;
}

const GENERATE_OPTIONS = [...SAMPLER_OPTIONS, ...TEXT_OPTIONS, "contextShift", "nKeep", "seq",
                          "append", "guide", "negativePrompt", "guidanceScale", "guidanceSeq"];

/* quill_generate_params from the options (the callback and cancel are the engine's). */
function generateParams(options) {
  const p = textParams(C.quill_generate_params_default(), options);
  if (options.contextShift !== undefined) p.context_shift = Boolean(options.contextShift);
  if (options.nKeep !== undefined) p.n_keep = integer(options.nKeep, "nKeep");
  if (options.seq !== undefined) p.seq = integer(options.seq, "seq");
  /* classifier-free guidance (docs/sampling.md): a second sequence, guidanceSeq */
  if (options.guide !== undefined) p.guide = string(options.guide, "guide");
  if (options.negativePrompt !== undefined)
    p.negative_prompt = string(options.negativePrompt, "negativePrompt");
  if (options.guidanceScale !== undefined)
    p.guidance_scale = number(options.guidanceScale, "guidanceScale");
  if (options.guidanceSeq !== undefined)
    p.guidance_seq = integer(options.guidanceSeq, "guidanceSeq");
  return p;
}

const BEAM_OPTIONS = [...SAMPLER_OPTIONS, ...TEXT_OPTIONS, "beamSize", "lengthPenalty", "nBest",
                      "mustInclude"];

function beamParams(options) {
  const p = textParams(C.quill_beam_params_default(), options);
  if (options.beamSize !== undefined) p.beam_size = integer(options.beamSize, "beamSize");
  if (options.lengthPenalty !== undefined)
    p.length_penalty = number(options.lengthPenalty, "lengthPenalty");
  if (options.nBest !== undefined) p.n_best = integer(options.nBest, "nBest");
  if (p.n_best < 1) throw new QuillError(`nBest must be at least 1, not ${p.n_best}`, "parameter");
  const words = strings(options.mustInclude, "mustInclude");
  [p.must_include, p.n_must_include] = [words.length ? words : null, words.length];
  return p;
}

const CACHE_TYPES = { default: 0, f32: 1, f16: 2, q8_0: 3 };
const POOLINGS = { mean: 0, last: 1 };

/* ---- models -------------------------------------------------------------------------- */

/* quill_chat_format on a model's C handle (a context's chat uses it too, on the handle it
 * keeps after its model is closed). */
function chatFormat(model, messages, template, addGenerationPrompt) {
  const rows = messages.map(({ role, content }) => ({
    role: string(role, "a message's role"),
    content: string(content, "a message's content"),
  }));
  if (template !== null) string(template, "template");
  const bytes = snprintfBytes((buf, cap) => C.quill_chat_format(
    model, template, rows, rows.length, addGenerationPrompt, buf, cap));
  if (!bytes) throw libraryError();
  return bytes.toString("utf8");
}

/* A C handle shared by its object and those that use it (a model's by its contexts and
 * adapters, an adapter's by the contexts that apply it): free(pointer) runs when the
 * object is closed (or collected) and no user is left. */
class SharedHandle {
  constructor(pointer, free) {
    this.pointer = pointer;
    this.free = free;
    this.users = 1;
  }

  acquire() {
    this.users++;
  }

  release() {
    if (--this.users === 0) {
      this.free(this.pointer);
      this.pointer = null;
    }
  }
}

/* A model's or an adapter's own use of its handle, let go when the garbage collector finds
 * the object unreachable, or at close(). */
const handleRegistry = new FinalizationRegistry((handle) => handle.release());

function releaseOwnUse(object, handles) {
  const handle = handles.get(object);
  if (!handle) return;
  handles.delete(object);
  handleRegistry.unregister(object);
  handle.release();
}

/* Each model's handle, kept out of the public object: Context reads it here. */
const modelHandles = new WeakMap();

/* A model's handle, or a QuillError once it is closed. */
function liveModelHandle(model) {
  const handle = modelHandles.get(model);
  if (!handle) throw new QuillError("the model is closed", "context");
  return handle;
}

/* A model's C handle, or a QuillError once it is closed. */
const modelPointer = (model) => liveModelHandle(model).pointer;

export class Model {
  /* Use Model.load. */
  constructor(pointer) {
    const handle = new SharedHandle(pointer, C.quill_model_free);
    modelHandles.set(this, handle);
    handleRegistry.register(this, handle, this);
  }

  /* A GGUF file or a `quill train` run directory, loaded on an engine thread. threads: the
   * threads its contexts compute on unless they say otherwise (default: every core). */
  static async load(path, options = {}) {
    checkOptions(options, ["threads"], "Model.load");
    string(path, "Model.load: path");
    if (options.threads !== undefined) integer(options.threads, "threads");
    const engine = takeEngine();
    try {
      return new Model(await engine.run("loadModel", { path, threads: options.threads }));
    } finally {
      giveBackEngine(engine);
    }
  }

  get architecture() { return C.quill_model_architecture(modelPointer(this)); }
  get name() { return C.quill_model_name(modelPointer(this)); }
  get vocabSize() { return C.quill_model_vocab_size(modelPointer(this)); }
  get contextLength() { return C.quill_model_context_length(modelPointer(this)); }
  get embeddingSize() { return C.quill_model_embedding_size(modelPointer(this)); }
  get layers() { return C.quill_model_layers(modelPointer(this)); }
  get parameterCount() { return Number(C.quill_model_parameter_count(modelPointer(this))); }
  /* The Jinja source of its chat template, or null. */
  get chatTemplate() { return C.quill_model_chat_template(modelPointer(this)); }
  get bos() { return C.quill_token_bos(modelPointer(this)); }
  get eos() { return C.quill_token_eos(modelPointer(this)); }
  /* One line: architecture, size, weight type, vocabulary and context. */
  get description() {
    return snprintfBytes((buf, cap) => C.quill_model_describe(modelPointer(this), buf, cap)).toString();
  }

  /* The token ids of text; addSpecial: a bos first where the model wants one;
   * parseSpecial: control-token text ("<|im_start|>") becomes its token. */
  tokenize(input, { addSpecial = true, parseSpecial = false } = {}) {
    const ids = tokenize(modelPointer(this), string(input, "tokenize: text"), addSpecial,
                         parseSpecial);
    if (!ids) throw libraryError();
    return Array.from(ids);
  }

  /* The text of token ids, as the tokenizer decodes them. */
  detokenize(ids) {
    const tokens = Int32Array.from(ids);
    const bytes = snprintfBytes((buf, cap) =>
      C.quill_detokenize(modelPointer(this), tokens, tokens.length, buf, cap));
    if (!bytes) throw libraryError();
    return bytes.toString("utf8");
  }

  /* The conversation [{ role, content }, ...] in the model's chat format (template: one of
   * chatml, llama2, llama3, zephyr, mistral, gemma, phi3 instead of the model's own),
   * the assistant's turn opened at the end unless addGenerationPrompt is false. */
  applyChatTemplate(messages, { template = null, addGenerationPrompt = true } = {}) {
    return chatFormat(modelPointer(this), messages, template, addGenerationPrompt);
  }

  /* Frees the model now (its memory stays until its last context is freed). */
  close() {
    releaseOwnUse(this, modelHandles);
  }

  free() {
    this.close();
  }
}

/* ---- LoRA adapters ------------------------------------------------------------------- */

/* Each adapter's handle, kept out of the public object: Context.setLora reads it here. */
const loraHandles = new WeakMap();

/* A LoRA adapter (quill_lora): llama.cpp's adapter GGUF, loaded for one model, which a
 * context applies as it runs (Context.setLora): W x + scale * alpha / rank * B (A x), the
 * model itself unchanged, so contexts with and without it share the model. */
export class Lora {
  #model;
  #path;

  /* Use Lora.load. */
  constructor(handle, model, path) {
    this.#model = model;
    this.#path = path;
    loraHandles.set(this, handle);
    handleRegistry.register(this, handle, this);
  }

  /* The adapter file at path, read for model on an engine thread and checked against it:
   * a QuillError of kind "file", naming the tensor, for an adapter of another architecture
   * or another model's shapes, a lora_a without its lora_b, or a file that is no adapter. */
  static async load(model, path) {
    if (!(model instanceof Model)) throw new QuillError("Lora.load: model must be a Model", "parameter");
    string(path, "Lora.load: path");
    const modelUse = liveModelHandle(model);
    modelUse.acquire(); /* the adapter keeps the model it was checked against */
    const engine = takeEngine();
    let pointer;
    try {
      pointer = await engine.run("loadLora", { model: modelUse.pointer, path });
    } catch (e) {
      modelUse.release();
      throw e;
    } finally {
      giveBackEngine(engine);
    }
    const free = (p) => {
      C.quill_lora_free(p);
      modelUse.release();
    };
    return new Lora(new SharedHandle(pointer, free), model, path);
  }

  get model() { return this.#model; }
  get path() { return this.#path; }

  /* Frees the adapter now (its memory stays while a context still applies it). */
  close() {
    releaseOwnUse(this, loraHandles);
  }

  free() {
    this.close();
  }
}

/* setLora's list: each entry a Lora (scale 1) or [lora, scale], the adapter open and
 * loaded for the context's model, the scale a finite number. Returns { handles, scales }. */
function loraList(entries, model) {
  if (!Array.isArray(entries))
    throw new QuillError("setLora: adapters must be an array of Lora or [lora, scale]",
                         "parameter");
  const handles = [], scales = [];
  for (const entry of entries) {
    const [lora, scale = 1] = Array.isArray(entry) ? entry : [entry];
    if (!(lora instanceof Lora))
      throw new QuillError("setLora: each adapter must be a Lora or [lora, scale]", "parameter");
    if (lora.model !== model)
      throw new QuillError(`setLora: ${lora.path} was loaded for another model`, "parameter");
    if (typeof scale !== "number" || !Number.isFinite(scale))
      throw new QuillError(`setLora: the scale of ${lora.path} must be a finite number, not ` +
                           shown(scale), "parameter");
    const handle = loraHandles.get(lora);
    if (!handle) throw new QuillError(`setLora: the adapter ${lora.path} is closed`, "context");
    handles.push(handle);
    scales.push(scale);
  }
  return { handles, scales };
}

/* ---- contexts ------------------------------------------------------------------------ */

/* What a context's finalizer frees: its C context, its use of the model and of the
 * adapters it applies; and it gives its engine thread back. */
function freeContext({ pointer, engine, modelHandle, loras }) {
  C.quill_context_free(pointer);
  giveBackEngine(engine);
  for (const lora of loras) lora.release();
  modelHandle.release();
}

const contextRegistry = new FinalizationRegistry(freeContext);

export class Context {
  #model;
  #resources; /* { pointer, engine, modelHandle, loras (the adapters' handles) }, null once
                 closed */
  #cancels = new Set(); /* the cancel flags of generations in flight */

  /* A KV cache on model: nCtx positions per sequence (default: the model's context
   * length), nSeq sequences, cacheType "default", "f32", "f16" or "q8_0"; threads and
   * nBatch as quill_context_params. */
  constructor(model, options = {}) {
    checkOptions(options, ["nCtx", "nSeq", "nBatch", "threads", "cacheType"], "Context");
    if (!(model instanceof Model)) throw new QuillError("Context: model must be a Model", "parameter");
    const p = C.quill_context_params_default();
    if (options.nCtx !== undefined) p.n_ctx = integer(options.nCtx, "nCtx");
    if (options.nSeq !== undefined) p.n_seq = integer(options.nSeq, "nSeq");
    if (options.nBatch !== undefined) p.n_batch = integer(options.nBatch, "nBatch");
    if (options.threads !== undefined) p.n_threads = integer(options.threads, "threads");
    if (options.cacheType !== undefined) {
      p.cache_type = CACHE_TYPES[options.cacheType];
      if (p.cache_type === undefined)
        throw new QuillError(`Context: cacheType '${options.cacheType}' is not one of ` +
                             Object.keys(CACHE_TYPES).join(", "), "parameter");
    }
    const pointer = C.quill_context_new(modelPointer(model), p);
    if (!pointer) throw libraryError();
    const modelHandle = modelHandles.get(model);
    modelHandle.acquire();
    this.#model = model;
    this.#resources = { pointer, engine: takeEngine(), modelHandle, loras: [] };
    contextRegistry.register(this, this.#resources, this);
  }

  get model() { return this.#model; }
  get nCtx() { return C.quill_context_n_ctx(this.#live().pointer); }
  get nSeq() { return C.quill_context_n_seq(this.#live().pointer); }

  /* What the context's generations have done so far (quill_context_perf): { nPromptTokens,
   * promptSeconds, nGenerated, generateSeconds, firstTokenSeconds }. Read it between
   * generations: the engine thread writes it while one runs. */
  get perf() {
    const p = C.quill_context_perf(this.#live().pointer);
    return { nPromptTokens: p.n_prompt_tokens, promptSeconds: p.prompt_seconds,
             nGenerated: p.n_generated, generateSeconds: p.generate_seconds,
             firstTokenSeconds: p.first_token_seconds };
  }

  #live() {
    if (!this.#resources) throw new QuillError("the context is closed", "context");
    return this.#resources;
  }

  /* Runs a job on the engine thread with this context and its model. */
  #run(op, args, onPiece) {
    const { pointer, engine, modelHandle } = this.#live();
    return engine.run(op, { context: pointer, model: modelHandle.pointer, ...args }, onPiece);
  }

  /* A generation's job: the options checked, a cancel flag allocated in C memory (the
   * engine thread reads it inside quill_generate) and freed when the job settles. */
  #startGeneration(prompt, options, onPiece) {
    checkOptions(options, GENERATE_OPTIONS, "generate");
    this.#live();
    const params = generateParams(options);
    const sampler = samplerParams(options);
    const cancel = koffi.alloc("int", 1);
    koffi.encode(cancel, "int", 0);
    params.cancel = cancel;
    this.#cancels.add(cancel);
    const args = { prompt: string(prompt, "prompt"), params, sampler, clear: !options.append,
                   stream: onPiece !== undefined };
    const done = this.#run("generate", args, onPiece).finally(() => {
      this.#cancels.delete(cancel);
      koffi.free(cancel);
    });
    return { done, cancel: () => koffi.encode(cancel, "int", 1) };
  }

  /* Continues prompt on sequence seq (default 0), which starts empty unless append is
   * true (then the text goes on after what the sequence holds). Resolves to { text,
   * finishReason ("length", "eos", "stop", "context" or "cancelled"), nTokens }. */
  async generate(prompt, options = {}) {
    const { text, finish, nTokens } = await this.#startGeneration(prompt, options).done;
    return { text: Buffer.from(text).toString("utf8"), finishReason: finish, nTokens };
  }

  /* The same generation, piece by piece as the tokens come: `for await (const piece of
   * context.stream(prompt, options))`. Leaving the loop early cancels the generation. */
  async *stream(prompt, options = {}) {
    const pieces = [];
    let wake = null;
    const job = this.#startGeneration(prompt, options, (piece) => {
      pieces.push(piece);
      wake?.();
    });
    let settled = false;
    const finished = job.done.finally(() => {
      settled = true;
      wake?.();
    });
    try {
      for (;;) {
        if (pieces.length > 0) {
          yield pieces.shift();
        } else if (settled) {
          break;
        } else {
          await new Promise((resolve) => { wake = resolve; });
          wake = null;
        }
      }
      await finished;
    } finally {
      if (!settled) job.cancel();
      await finished.catch(() => {});
    }
  }

  /* The reply to a conversation [{ role, content }, ...]: the messages in the model's chat
   * format (options.template overrides it), then generate. */
  async chat(messages, { template = null, ...options } = {}) {
    const prompt = chatFormat(this.#live().modelHandle.pointer, messages, template, true);
    return this.generate(prompt, { ...options, parseSpecial: true });
  }

  /* The beams' best texts for prompt, best first: [{ text, score, nTokens, finishReason }]
   * (nBest of them, default 1). Uses sequences 0 .. beamSize - 1, so the context needs
   * nSeq >= beamSize; penalties, logitBias and badWords shape the scores. mustInclude:
   * words or phrases each text must hold (quill generate --must-include); each beam's
   * missed lists those its text lacks (none when it holds them all). */
  async beamSearch(prompt, options = {}) {
    checkOptions(options, BEAM_OPTIONS, "beamSearch");
    const args = { prompt: string(prompt, "prompt"), params: beamParams(options),
                   sampler: samplerParams(options) };
    const results = await this.#run("beamSearch", args);
    return results.map(({ text, score, nTokens, finish, missed }) => ({
      text: Buffer.from(text).toString("utf8"), score, nTokens, finishReason: finish, missed,
    }));
  }

  /* The embedding of text: a Float32Array of the model's embedding size, the final hidden
   * states pooled ("mean" or "last") and scaled to length 1 unless normalize is false. */
  async embed(input, { pooling = "mean", normalize = true, seq = 0 } = {}) {
    if (!(pooling in POOLINGS))
      throw new QuillError(`embed: pooling '${pooling}' is not mean or last`, "parameter");
    return this.#run("embed", {
      text: string(input, "embed: text"), seq: integer(seq, "seq"), pooling: POOLINGS[pooling],
      normalize: Boolean(normalize),
      width: C.quill_model_embedding_size(this.#live().modelHandle.pointer),
    });
  }

  /* The LoRA adapters the context applies from its next generation on, replacing those it
   * applied: [[lora, scale], ...] (a bare Lora: scale 1; [] the base model), as
   * quill_context_set_lora. It waits for the generations in flight. */
  async setLora(adapters) {
    const { handles, scales } = loraList(adapters, this.#model);
    const resources = this.#live();
    const previous = resources.loras;
    for (const handle of handles) handle.acquire();
    resources.loras = handles;
    try {
      await this.#run("setLora", { adapters: handles.map((h) => h.pointer), scales });
    } catch (e) {
      resources.loras = previous;
      for (const handle of handles) handle.release();
      throw e;
    }
    for (const handle of previous) handle.release();
  }

  /* Frees the context: at once when idle, otherwise after the generations in flight,
   * which are cancelled. Resolves when it is freed. */
  async close() {
    const resources = this.#resources;
    if (!resources) return;
    this.#resources = null;
    contextRegistry.unregister(this);
    for (const cancel of this.#cancels) koffi.encode(cancel, "int", 1);
    await resources.engine.idle();
    freeContext(resources);
  }

  free() {
    return this.close();
  }
}

// TypeScript declarations for quill's Node.js binding (index.js). Every export is declared
// here; test/types.test.js checks that none is missing.

/** What kind of failure a QuillError is (the library's quill_error_kind). */
export type ErrorKind = "none" | "file" | "parameter" | "context" | "memory";

/** A failure the library reported (or the binding, checking an argument), with its message. */
export class QuillError extends Error {
  constructor(message: string, kind: ErrorKind);
  readonly name: "QuillError";
  /** "file": missing or not a model; "parameter": an argument out of range or of the wrong
   * type; "context": the context cannot take the request, or is closed; "memory". */
  readonly kind: ErrorKind;
}

/** The loaded library's version, e.g. "0.1.0". */
export function version(): string;
/** The CPU features the kernels use and the matrix library in use. */
export function cpuFeatures(): string;
/** The libquill.so that was loaded ($QUILL_LIBRARY, the checkout's lib/, or the system's). */
export const libraryPath: string;

export interface ChatMessage {
  role: "system" | "user" | "assistant";
  content: string;
}

export interface LoadOptions {
  /** Threads its contexts compute on unless they say otherwise (default: every core). */
  threads?: number;
}

export class Model {
  /** A GGUF file or a `quill train` run directory, loaded off the event loop. */
  static load(path: string, options?: LoadOptions): Promise<Model>;
  private constructor(pointer: bigint);
  readonly architecture: string;
  readonly name: string;
  readonly vocabSize: number;
  readonly contextLength: number;
  readonly embeddingSize: number;
  readonly layers: number;
  readonly parameterCount: number;
  /** The Jinja source of the model's chat template, or null. */
  readonly chatTemplate: string | null;
  readonly bos: number;
  readonly eos: number;
  /** One line: architecture, size, weight type, vocabulary and context. */
  readonly description: string;
  tokenize(text: string, options?: { addSpecial?: boolean; parseSpecial?: boolean }): number[];
  detokenize(ids: Iterable<number>): string;
  applyChatTemplate(messages: ChatMessage[],
                    options?: { template?: string | null; addGenerationPrompt?: boolean }): string;
  /** Frees the model (its memory stays until its last context is freed). */
  close(): void;
  free(): void;
}

/** A LoRA adapter: llama.cpp's adapter GGUF, loaded for one model, which a context applies
 * as it runs (Context.setLora), the model itself unchanged. */
export class Lora {
  /** The adapter file, read off the event loop and checked against model: a QuillError of
   * kind "file", naming the tensor, for another architecture or another model's shapes, a
   * lora_a without its lora_b, or a file that is not an adapter. */
  static load(model: Model, path: string): Promise<Lora>;
  private constructor(handle: unknown, model: Model, path: string);
  readonly model: Model;
  readonly path: string;
  /** Frees the adapter (its memory stays while a context still applies it). */
  close(): void;
  free(): void;
}

/** An adapter and its scale (a bare Lora: scale 1). */
export type LoraUse = Lora | [Lora, number];

export type CacheType = "default" | "f32" | "f16" | "q8_0";

export interface ContextOptions {
  /** Positions each sequence holds (default: the model's context length). */
  nCtx?: number;
  /** Independent sequences (default 1; beam search needs beamSize of them). */
  nSeq?: number;
  /** Tokens one forward pass takes at most (default 512). */
  nBatch?: number;
  threads?: number;
  cacheType?: CacheType;
}

/** The sampler chain's settings, as `quill generate`'s flags (docs/sampling.md). */
export interface SamplerOptions {
  /** 0: greedy (a negative one is refused); default 0.8. */
  temperature?: number;
  topK?: number;
  topP?: number;
  minP?: number;
  typicalP?: number;
  repeatPenalty?: number;
  repeatLastN?: number;
  frequencyPenalty?: number;
  presencePenalty?: number;
  penalizePrompt?: boolean;
  /** The fewest tokens top-p, min-p, typical-p and XTC leave; 0 (default) keeps one. */
  minKeep?: number;
  /** DRY: a token that would extend a repeat of n tokens loses
   * dryMultiplier * dryBase^(n - dryAllowedLength); 0 (default): off. */
  dryMultiplier?: number;
  dryBase?: number;
  dryAllowedLength?: number;
  /** DRY's window: -1 (default) the whole history, 0 off. */
  dryPenaltyLastN?: number;
  /** Repeats never reach back past these texts; default "\n", ":", "\"", "*"; [] none. */
  drySequenceBreakers?: string | string[];
  /** "deterministic", "balanced" or "creative", applied before the other settings. */
  preset?: string;
  /** The random draw's seed; default a random one. */
  seed?: number | bigint;
  /** The chain's stages in order: "penalties,top-k,top-p,min-p,temperature" or a list. */
  samplers?: string | string[];
  /** Added to tokens' logits; -Infinity bans a token. */
  logitBias?: Record<number, number> | Map<number, number> | Array<[number, number]>;
  /** Texts never to generate. */
  badWords?: string | string[];
  /** XTC: the chance per token of removing the top choices (0: off) and their threshold. */
  xtcProbability?: number;
  xtcThreshold?: number;
  /** Keep logits >= max - topNSigma * their standard deviation (-1: off). */
  topNSigma?: number;
  /** Dynamic temperature: temperature +- dynatempRange by the entropy (0: off). */
  dynatempRange?: number;
  dynatempExponent?: number;
  /** 0: off, 1: Mirostat, 2: Mirostat 2.0 (target surprise mirostatTau, rate mirostatEta). */
  mirostat?: number;
  mirostatTau?: number;
  mirostatEta?: number;
  /** A GBNF grammar the generated text must follow (docs/grammars.md). */
  grammar?: string;
  /** A JSON Schema the text must be valid JSON under (an object, or its JSON text); {} is
   * any JSON value. Not with grammar. */
  jsonSchema?: object | boolean | string;
}

export interface TextOptions {
  /** Tokens to generate at most (generate: -1, until the end of text or context). */
  maxTokens?: number;
  stop?: string | string[];
  ignoreEos?: boolean;
  addSpecial?: boolean;
  parseSpecial?: boolean;
}

export interface GenerateOptions extends SamplerOptions, TextOptions {
  contextShift?: boolean;
  nKeep?: number;
  /** The sequence to write (default 0). */
  seq?: number;
  /** Continue after what the sequence holds instead of starting it afresh. */
  append?: boolean;
  /** Classifier-free guidance (docs/sampling.md): text before the prompt on the
   * conditional side (seq). */
  guide?: string;
  /** Text before the prompt on the unconditional side (guidanceSeq). */
  negativePrompt?: string;
  /** S in uncond + S (cond - uncond); default 1.5 (1: the conditional side alone). */
  guidanceScale?: number;
  /** The unconditional side's sequence (default 1; the context needs nSeq >= 2). */
  guidanceSeq?: number;
}

export type FinishReason = "length" | "eos" | "stop" | "context" | "cancelled";

export interface Generation {
  text: string;
  finishReason: FinishReason;
  nTokens: number;
}

export interface BeamOptions extends SamplerOptions, TextOptions {
  beamSize?: number;
  lengthPenalty?: number;
  nBest?: number;
  /** Words or phrases each text must hold (quill generate --must-include). */
  mustInclude?: string | string[];
}

export interface Beam {
  text: string;
  score: number;
  nTokens: number;
  finishReason: FinishReason;
  /** The words of mustInclude the text lacks (none when it holds them all). */
  missed: string[];
}

export interface EmbedOptions {
  pooling?: "mean" | "last";
  normalize?: boolean;
  seq?: number;
}

export interface Perf {
  nPromptTokens: number;
  promptSeconds: number;
  nGenerated: number;
  generateSeconds: number;
  firstTokenSeconds: number;
}

export class Context {
  constructor(model: Model, options?: ContextOptions);
  readonly model: Model;
  readonly nCtx: number;
  readonly nSeq: number;
  /** What the context's generations have done so far; read it between generations. */
  readonly perf: Perf;
  generate(prompt: string, options?: GenerateOptions): Promise<Generation>;
  /** The pieces as they come; leaving the loop early cancels the generation. */
  stream(prompt: string, options?: GenerateOptions): AsyncGenerator<string, void, undefined>;
  chat(messages: ChatMessage[], options?: GenerateOptions & { template?: string | null }): Promise<Generation>;
  beamSearch(prompt: string, options?: BeamOptions): Promise<Beam[]>;
  embed(text: string, options?: EmbedOptions): Promise<Float32Array>;
  /** The adapters applied from the next generation on, replacing those before ([]: the
   * base model); `quill generate --lora F --lora-scale S` is setLora([[lora, S]]). */
  setLora(adapters: LoraUse[]): Promise<void>;
  /** Frees the context, cancelling generations in flight; resolves once it is freed. */
  close(): Promise<void>;
  free(): Promise<void>;
}

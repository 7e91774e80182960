/*
 * An engine thread: where a context's slow calls run, off the main thread's event loop.
 *
 * Each Context (and each Model.load) has its own worker thread running this file. The
 * main thread posts it a job { id, op, args }; the worker makes the library's calls
 * synchronously, on its own thread, and posts back { id, result } or { id, error }. Two
 * reasons for a thread of our own rather than koffi's `.async()` calls, which run each
 * call on whichever thread of a pool is free:
 *   - quill_last_error() is per thread: the message of a failed call can only be read on
 *     the thread that made the call, right after it. Here it is.
 *   - quill_generate calls back once per token. Here the callback runs on this thread,
 *     inside the call, at the cost of a JS function call; a callback from a pool thread
 *     would wait each token for the main thread's event loop to run it.
 * A stream's pieces go to the main thread as they come ({ id, piece }); a cancel is an int
 * in C memory that the main thread sets (quill_generate_params.cancel), since this thread
 * is inside quill_generate and reads no message until it returns.
 */
import { parentPort } from "node:worker_threads";

import {
  BeamResult, C, TokenCallback, TokenEvent, copyBytes, koffi, lastError, tokenize,
} from "./ffi.js";

class LibraryError extends Error {
  constructor({ message, kind }) {
    super(message);
    this.kind = kind;
  }
}

/* The library's verdict on the call just made: its error, read on this thread. */
const fail = () => { throw new LibraryError(lastError()); };

/* The running generation's per-token handler; one callback is registered for the thread's
 * lifetime (registration takes one of koffi's few slots) and calls it. */
let onToken = null;
const tokenCallback = koffi.register(
  (ev) => onToken(koffi.decode(ev, TokenEvent)), koffi.pointer(TokenCallback));

function loadModel({ path, threads }) {
  const params = C.quill_model_params_default();
  if (threads !== undefined) params.n_threads = threads;
  return C.quill_model_load(path, params) ?? fail();
}

/* A LoRA adapter file read for the model (the library checks it against the model). */
function loadLora({ model, path }) {
  return C.quill_lora_load(model, path) ?? fail();
}

/* The adapters the context applies from now on, each with its scale (none: the base
 * model). On this thread, so that it lands between the context's generations. */
function setLora({ context, adapters, scales }) {
  const n = adapters.length;
  if (C.quill_context_set_lora(context, n ? adapters : null,
                               n ? Float32Array.from(scales) : null, n) !== 0) fail();
  return null;
}

/* A sampler for one call, freed after it. */
function withSampler(model, params, use) {
  const sampler = C.quill_sampler_new(model, params) ?? fail();
  try {
    return use(sampler);
  } finally {
    C.quill_sampler_free(sampler);
  }
}

/* quill_generate on the context's sequence: the text's bytes come through the callback,
 * streamed to the main thread as they come (stream) or gathered and sent at the end. */
function generate({ context, model, sampler, prompt, params, clear, stream }, id) {
  if (clear && C.quill_seq_clear(context, params.seq) !== 0) fail();
  const chunks = [];
  /* A stream's pieces go as strings: a piece may end inside a UTF-8 character (a model
   * writing stray bytes), which the decoder keeps until the next piece completes it, so
   * the pieces joined are the whole text's bytes decoded at once. */
  const decoder = new TextDecoder("utf-8");
  let nTokens = 0;
  onToken = (ev) => {
    if (ev.token >= 0) nTokens++;
    const n = Number(ev.n_text);
    if (n > 0) {
      const bytes = copyBytes(ev.text, n);
      if (stream) {
        const piece = decoder.decode(bytes, { stream: true });
        if (piece) parentPort.postMessage({ id, piece });
      } else {
        chunks.push(bytes);
      }
    }
    return true;
  };
  const finish = [0];
  const status = withSampler(model, sampler, (s) =>
    C.quill_generate(context, s, prompt, { ...params, on_token: tokenCallback, user: null },
                     finish));
  onToken = null;
  if (status !== 0) fail();
  const tail = stream ? decoder.decode() : "";
  if (tail) parentPort.postMessage({ id, piece: tail });
  return { text: Buffer.concat(chunks), finish: C.quill_finish_reason_name(finish[0]), nTokens };
}

/* quill_beam_search: its n_best results, best first, copied out of the library's memory
 * before it is freed; each result's missed bits (bit i: must_include[i] is not in the
 * text) become the words. */
function beamSearch({ context, model, sampler, prompt, params }) {
  /* Room for the texts asked for, which are at most the beams (the library says so when
   * n_best is larger). */
  const cap = Math.max(1, Math.min(params.n_best, params.beam_size));
  const out = koffi.alloc(BeamResult, cap);
  try {
    const n = withSampler(model, sampler, (s) =>
      C.quill_beam_search(context, s, prompt, params, out, cap));
    if (n < 0) fail();
    const results = n === 0 ? [] : koffi.decode(out, BeamResult, n);
    const words = params.must_include ?? [];
    const copied = results.map((r) => ({
      text: copyBytes(r.text, Number(r.n_text)), score: r.score, nTokens: r.n_tokens,
      finish: C.quill_finish_reason_name(r.finish),
      missed: words.filter((_, i) => (BigInt(r.missed) >> BigInt(i)) & 1n),
    }));
    C.quill_beam_results_free(out, n);
    return copied;
  } finally {
    koffi.free(out);
  }
}

/* The embedding of a text: its tokens through sequence seq, pooled. */
function embed({ context, model, text, seq, pooling, normalize, width }) {
  const tokens = tokenize(model, text) ?? fail();
  const out = new Float32Array(width);
  /* A text longer than the context is the library's error to report: it sees n. */
  const status = C.quill_embed(context, seq, tokens, tokens.length, pooling, normalize, out);
  if (status !== 0) fail();
  return out;
}

const OPS = { loadModel, loadLora, setLora, generate, beamSearch, embed, noop: () => null };

/* The thread's end (Engine.end): the callback's slot released, then nothing more to wait
 * for, so the thread's event loop ends. */
function end() {
  koffi.unregister(tokenCallback);
  parentPort.close();
}

parentPort.on("message", ({ id, op, args }) => {
  if (op === "end") return end();
  try {
    parentPort.postMessage({ id, result: OPS[op](args, id) });
  } catch (e) {
    const error = e instanceof LibraryError
      ? { message: e.message, kind: e.kind }
      : { message: String(e?.message ?? e), kind: "parameter" };
    parentPort.postMessage({ id, error });
  }
});

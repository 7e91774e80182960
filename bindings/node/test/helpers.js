/*
 * What the binding's tests share with tests/node (the quill binary, the ../shared models
 * and the command line's output to compare with), the model they all load, and a LoRA
 * adapter file for it.
 */
import { writeFileSync } from "node:fs";

import { Model } from "../index.js";
import { assertSameText, cliBytes, sharedFile } from "../../../tests/node/quill.mjs";

export { assertSameText, cliBytes, sharedFile };
export { QUILL, ROOT, tempDir } from "../../../tests/node/quill.mjs";

export const STORIES = sharedFile("models/stories260K.gguf");
export const PROMPT = "Once upon a time";

/* stories260K, loaded once per test file (node --test runs each file in its own process). */
let stories = null;
export async function storiesModel() {
  stories ??= await Model.load(STORIES.path);
  return stories;
}

/* stories260K's matrices the adapter changes: name, in, out */
const TARGETS = [["blk.0.attn_q.weight", 64, 64], ["blk.2.ffn_up.weight", 64, 172],
                 ["output.weight", 64, 512]];
const RANK = 4;

const u64 = (n) => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(n));
  return b;
};
const u32 = (n) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
};
const f32s = (values) => Buffer.from(Float32Array.from(values).buffer);
const ggufString = (s) => Buffer.concat([u64(Buffer.byteLength(s)), Buffer.from(s)]);
const padTo32 = (length) => Buffer.alloc((32 - (length % 32)) % 32);

/* The same 32-bit generator of uniform numbers in [-0.3, 0.3) each run (mulberry32): factors
 * that change stories260K's greedy text at scale 0.5 too (+-0.2 does not) without making it
 * write stray bytes (+-0.5 does). */
function uniform(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return 0.6 * (((t ^ (t >>> 14)) >>> 0) / 2 ** 32 - 0.5);
  };
}

/* An adapter for stories260K, as llama.cpp writes one: a GGUF v3 file of four string or f32 keys (types 8 and 6), then (rank, in) A and
 * (out, rank) B in F32 (type 0) per target, drawn from a fixed seed, 32-byte aligned. */
export function writeAdapter(path, generalType = "adapter") {
  const draw = uniform(3);
  const tensors = [];
  for (const [name, nIn, nOut] of TARGETS) {
    tensors.push([`${name}.lora_a`, [nIn, RANK], Array.from({ length: RANK * nIn }, draw)]);
    tensors.push([`${name}.lora_b`, [RANK, nOut], Array.from({ length: nOut * RANK }, draw)]);
  }
  const keys = [["general.architecture", 8, ggufString("llama")],
                ["general.type", 8, ggufString(generalType)],
                ["adapter.type", 8, ggufString("lora")],
                ["adapter.lora.alpha", 6, f32s([8])]];
  const head = [Buffer.from("GGUF"), u32(3), u64(tensors.length), u64(keys.length)];
  for (const [key, type, value] of keys) head.push(ggufString(key), u32(type), value);
  const data = [];
  let offset = 0;
  for (const [name, ne, values] of tensors) {
    head.push(ggufString(name), u32(2), u64(ne[0]), u64(ne[1]), u32(0), u64(offset));
    const blob = f32s(values);
    data.push(blob, padTo32(blob.length));
    offset += blob.length + padTo32(blob.length).length;
  }
  const header = Buffer.concat(head);
  writeFileSync(path, Buffer.concat([header, padTo32(header.length), ...data]));
}

/*
 * Just enough of GGUF for the node tests, written from the format's specification
 * (ggml's docs/gguf.md), not from quill's reader, so that what it reads is a check from
 * outside: the metadata's values, and a copy of a file with one more key (a chat template
 * for a model that has none).
 *
 * A GGUF file, all integers little-endian:
 *   "GGUF", version u32, n_tensors u64, n_kv u64
 *   n_kv times:      key (string), value type u32, value
 *   n_tensors times: name (string), n_dims u32, dims u64 x n_dims, type u32, offset u64
 *   zero padding up to general.alignment (32 when absent), then the tensors' data, each
 *   tensor's offset counted from the start of the data.
 * A string is its byte length (u64) and its UTF-8 bytes; an array is its element type
 * (u32), its length (u64) and the elements.
 */
import { readFileSync, writeFileSync } from "node:fs";

const STRING = 8, ARRAY = 9;
/* Bytes per value of the fixed-size types, by type number (u8, i8, u16, i16, u32, i32,
 * f32, bool; then u64, i64, f64). */
const FIXED_SIZE = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };

/* Reads a file's header, metadata and tensor table: the metadata as a Map of key to value
 * (strings and numbers; arrays are skipped, as null), the offsets where the metadata ends
 * and the data begins. */
export function readGguf(path) {
  const buf = readFileSync(path);
  let at = 0;
  const u32 = () => { const v = buf.readUInt32LE(at); at += 4; return v; };
  const u64 = () => { const v = buf.readBigUInt64LE(at); at += 8; return Number(v); };
  const string = () => { const n = u64(); const s = buf.toString("utf8", at, at + n); at += n; return s; };
  const scalar = (type) => {
    const read = {
      0: () => buf.readUInt8(at), 1: () => buf.readInt8(at), 2: () => buf.readUInt16LE(at),
      3: () => buf.readInt16LE(at), 4: () => buf.readUInt32LE(at), 5: () => buf.readInt32LE(at),
      6: () => buf.readFloatLE(at), 7: () => buf.readUInt8(at) !== 0,
      10: () => Number(buf.readBigUInt64LE(at)), 11: () => Number(buf.readBigInt64LE(at)),
      12: () => buf.readDoubleLE(at),
    }[type];
    if (!read) throw new Error(`${path}: unknown GGUF value type ${type} at byte ${at}`);
    const v = read();
    at += FIXED_SIZE[type];
    return v;
  };
  const skipArray = () => {
    const type = u32(), n = u64();
    if (type === STRING) for (let i = 0; i < n; i++) string();
    else if (FIXED_SIZE[type]) at += n * FIXED_SIZE[type];
    else throw new Error(`${path}: an array of type ${type} is not supported here`);
  };

  if (buf.toString("latin1", 0, 4) !== "GGUF") throw new Error(`${path} is not a GGUF file`);
  at = 4;
  const version = u32(), nTensors = u64(), nKv = u64();
  const metadata = new Map();
  for (let i = 0; i < nKv; i++) {
    const key = string(), type = u32();
    if (type === STRING) metadata.set(key, string());
    else if (type === ARRAY) { skipArray(); metadata.set(key, null); }
    else metadata.set(key, scalar(type));
  }
  const metadataEnd = at;
  for (let i = 0; i < nTensors; i++) {
    string();
    const nDims = u32();
    at += 8 * nDims + 4 + 8; /* dims, type, offset */
  }
  const alignment = metadata.get("general.alignment") ?? 32;
  const dataStart = Math.ceil(at / alignment) * alignment;
  return { buf, version, nTensors, nKv, metadata, metadataEnd, tensorsEnd: at, alignment, dataStart };
}

function ggufString(text) {
  const bytes = Buffer.from(text, "utf8");
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(bytes.length));
  return Buffer.concat([length, bytes]);
}

/* Writes a copy of the model at src to dst with one more string key: the same tensors,
 * the tensor table and data moved down by the new key's bytes (and re-padded). */
export function copyWithStringKey(src, dst, key, value) {
  const g = readGguf(src);
  if (g.metadata.has(key)) throw new Error(`${src} already has ${key}`);
  const header = Buffer.from(g.buf.subarray(0, 24));
  header.writeBigUInt64LE(BigInt(g.nKv + 1), 16);
  const type = Buffer.alloc(4);
  type.writeUInt32LE(STRING);
  const head = Buffer.concat([
    header, g.buf.subarray(24, g.metadataEnd),
    ggufString(key), type, ggufString(value),
    g.buf.subarray(g.metadataEnd, g.tensorsEnd),
  ]);
  const padding = Buffer.alloc((g.alignment - (head.length % g.alignment)) % g.alignment);
  writeFileSync(dst, Buffer.concat([head, padding, g.buf.subarray(g.dataStart)]));
}

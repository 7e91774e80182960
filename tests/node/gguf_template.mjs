// A copy of a GGUF model with a chat template added (tokenizer.chat_template), for tests
// of chat completions on ../shared models that have none. GGUF (v2 and v3): the magic
// "GGUF", the version (u32), the tensor count and the key-value count (u64 each), the
// key-values, the tensors' descriptions, zero padding to the file's alignment, then the
// tensors' data, whose offsets count from that data's start: so a key-value added at the
// end of the others moves the data as a whole and changes no offset.
import { readFileSync, writeFileSync } from 'node:fs';

const TYPE_STRING = 8;
const TYPE_ARRAY = 9;
// The bytes of each fixed-size value type, by its GGUF type number (8 and 9 vary).
const FIXED_SIZE = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };

// Reads the parts of the file in order, keeping the offset.
class Reader {
  constructor(buf) { this.buf = buf; this.at = 0; }
  u32() { const v = this.buf.readUInt32LE(this.at); this.at += 4; return v; }
  u64() { const v = Number(this.buf.readBigUInt64LE(this.at)); this.at += 8; return v; }
  string() {
    const n = this.u64();
    const s = this.buf.toString('utf8', this.at, this.at + n);
    this.at += n;
    return s;
  }
  // Steps over one value of the given type; returns it when it is a u32 (general.alignment).
  value(type) {
    if (type === TYPE_STRING) return this.string();
    if (type === TYPE_ARRAY) {
      const itemType = this.u32();
      const n = this.u64();
      for (let i = 0; i < n; i++) this.value(itemType);
      return undefined;
    }
    if (!(type in FIXED_SIZE)) throw new Error(`unknown GGUF value type ${type}`);
    const v = type === 4 ? this.buf.readUInt32LE(this.at) : undefined;
    this.at += FIXED_SIZE[type];
    return v;
  }
}

function ggufString(s) {
  const bytes = Buffer.from(s, 'utf8');
  const n = Buffer.alloc(8);
  n.writeBigUInt64LE(BigInt(bytes.length));
  return Buffer.concat([n, bytes]);
}

export function copyWithChatTemplate(source, destination, template) {
  const buf = readFileSync(source);
  const r = new Reader(buf);
  if (buf.toString('latin1', 0, 4) !== 'GGUF') throw new Error(`${source} is not a GGUF file`);
  r.at = 8;
  const nTensors = r.u64();
  const nKv = r.u64();
  const kvStart = r.at;
  let alignment = 32;
  for (let i = 0; i < nKv; i++) {
    const key = r.string();
    if (key === 'tokenizer.chat_template') throw new Error(`${source} has a chat template`);
    const v = r.value(r.u32());
    if (key === 'general.alignment') alignment = v;
  }
  const kvEnd = r.at;
  for (let i = 0; i < nTensors; i++) {
    r.string();
    const nDims = r.u32();
    r.at += 8 * nDims + 4 + 8; // the dimensions, the type, the offset
  }
  const infoEnd = r.at;
  const dataStart = Math.ceil(infoEnd / alignment) * alignment;

  const header = Buffer.from(buf.subarray(0, kvStart));
  header.writeBigUInt64LE(BigInt(nKv + 1), 16);
  const type = Buffer.alloc(4);
  type.writeUInt32LE(TYPE_STRING);
  const head = Buffer.concat([header, buf.subarray(kvStart, kvEnd),
    ggufString('tokenizer.chat_template'), type, ggufString(template), buf.subarray(kvEnd, infoEnd)]);
  const padding = Buffer.alloc(Math.ceil(head.length / alignment) * alignment - head.length);
  writeFileSync(destination, Buffer.concat([head, padding, buf.subarray(dataStart)]));
}

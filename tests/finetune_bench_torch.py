"""The LoRA step of `quill finetune` in plain PyTorch, for `make bench-finetune`.

    /usr/bin/python3 tests/finetune_bench_torch.py MODEL-F32.gguf [--threads N] [--steps N]

Debian's python3-torch (apt-get install -y python3-torch; Debian's interpreter, not a
virtual environment's). The frozen weights are read from the F32 GGUF file with numpy
alone (the header as docs/formats.md describes it), memory-mapped copy-on-write as quill
maps them, so that neither program copies the base. The llama forward pass is the one
quill runs: RMSNorm, RoPE, causal attention, SwiGLU, untied output; every one of the seven
projections of each block gets y = W x + (alpha / r) B (A x), A (r, in) uniform in
+-1/sqrt(in), B (out, r) zero; AdamW on A and B only. The tokens are random ids (the
speed of a step does not depend on which tokens). Prints one line:

    torch THREADS threads: TOKENS tokens/s (median of STEPS steps), peak RSS MB
"""

import argparse
import math
import resource
import statistics
import struct
import time

import numpy as np
import torch
import torch.nn.functional as F

GGUF_F32 = 0
# struct formats of GGUF's fixed-size metadata value types (u8 ... f64); 8 string, 9 array.
SCALAR_FORMATS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?",
                  10: "Q", 11: "q", 12: "d"}


class Reader:
    def __init__(self, data):
        self.data, self.pos = data, 0

    def take(self, fmt):
        values = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return values[0] if len(values) == 1 else values

    def string(self):
        n = self.take("Q")
        s = bytes(self.data[self.pos:self.pos + n]).decode()
        self.pos += n
        return s

    def value(self, kind):
        if kind == 8:
            return self.string()
        if kind == 9:
            item, n = self.take("IQ")
            return [self.value(item) for _ in range(n)]
        return self.take(SCALAR_FORMATS[kind])


def load_gguf(path):
    """The metadata and every tensor, as torch views of a copy-on-write map of the file."""
    data = np.memmap(path, dtype=np.uint8, mode="c")
    r = Reader(data)
    magic, _version, n_tensors, n_kv = r.take("4sIQQ")
    assert magic == b"GGUF", f"{path}: not a GGUF file"
    meta = {}
    for _ in range(n_kv):
        key = r.string()
        meta[key] = r.value(r.take("I"))
    infos = []
    for _ in range(n_tensors):
        name = r.string()
        dims = [r.take("Q") for _ in range(r.take("I"))]
        kind, offset = r.take("IQ")
        assert kind == GGUF_F32, f"{name}: type {kind}, this script reads F32 only"
        infos.append((name, dims, offset))
    align = meta.get("general.alignment", 32)
    base = (r.pos + align - 1) // align * align
    tensors = {}
    for name, dims, offset in infos:
        count = math.prod(dims)
        flat = data[base + offset:base + offset + 4 * count].view(np.float32)
        # GGUF lists dims fastest first: ne = [in, out] is a row-major (out, in) matrix.
        tensors[name] = torch.from_numpy(flat.reshape(list(reversed(dims))))
    return meta, tensors


class LoRA(torch.nn.Module):
    def __init__(self, weight, rank, alpha):
        super().__init__()
        out_dim, in_dim = weight.shape
        self.weight = weight  # frozen: a plain tensor, no gradient
        bound = 1.0 / math.sqrt(in_dim)
        self.a = torch.nn.Parameter(torch.empty(rank, in_dim).uniform_(-bound, bound))
        self.b = torch.nn.Parameter(torch.zeros(out_dim, rank))
        self.scale = alpha / rank

    def forward(self, x):
        return F.linear(x, self.weight) + self.scale * F.linear(F.linear(x, self.a), self.b)


def rms_norm(x, gain, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * gain


def rope(x, cos, sin):
    # x (B, H, T, hd): the pairs (2i, 2i+1) rotated, as llama.cpp's normal RoPE does.
    even, odd = x[..., 0::2], x[..., 1::2]
    return torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1).flatten(-2)


class Llama(torch.nn.Module):
    TARGETS = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")

    def __init__(self, meta, t, rank, alpha):
        super().__init__()
        self.layers = meta["llama.block_count"]
        self.heads = meta["llama.attention.head_count"]
        self.kv_heads = meta.get("llama.attention.head_count_kv", self.heads)
        self.eps = meta["llama.attention.layer_norm_rms_epsilon"]
        self.rope_base = meta.get("llama.rope.freq_base", 10000.0)
        self.t = t
        self.lora = torch.nn.ModuleDict({
            f"{i}_{name}": LoRA(t[f"blk.{i}.{name}.weight"], rank, alpha)
            for i in range(self.layers) for name in self.TARGETS})

    def forward(self, tokens):
        t, (batch, seq) = self.t, tokens.shape
        x = F.embedding(tokens, t["token_embd.weight"])
        dim = x.shape[-1]
        hd = dim // self.heads
        freqs = self.rope_base ** (-torch.arange(0, hd, 2, dtype=torch.float32) / hd)
        angles = torch.outer(torch.arange(seq, dtype=torch.float32), freqs)
        cos, sin = angles.cos(), angles.sin()
        mask = torch.ones(seq, seq, dtype=torch.bool).triu(1)  # True above the diagonal
        for i in range(self.layers):
            p = lambda name: self.lora[f"{i}_{name}"]  # noqa: E731
            h = rms_norm(x, t[f"blk.{i}.attn_norm.weight"], self.eps)
            q = p("attn_q")(h).view(batch, seq, self.heads, hd).transpose(1, 2)
            k = p("attn_k")(h).view(batch, seq, self.kv_heads, hd).transpose(1, 2)
            v = p("attn_v")(h).view(batch, seq, self.kv_heads, hd).transpose(1, 2)
            q, k = rope(q, cos, sin), rope(k, cos, sin)
            if self.kv_heads != self.heads:
                k = k.repeat_interleave(self.heads // self.kv_heads, dim=1)
                v = v.repeat_interleave(self.heads // self.kv_heads, dim=1)
            scores = (q @ k.transpose(-2, -1)) / math.sqrt(hd)  # (B, H, T, T)
            a = torch.softmax(scores.masked_fill(mask, float("-inf")), dim=-1) @ v
            x = x + p("attn_output")(a.transpose(1, 2).reshape(batch, seq, dim))
            h = rms_norm(x, t[f"blk.{i}.ffn_norm.weight"], self.eps)
            x = x + p("ffn_down")(F.silu(p("ffn_gate")(h)) * p("ffn_up")(h))
        x = rms_norm(x, t["output_norm.weight"], self.eps)
        return F.linear(x, t["output.weight"])


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3  # Linux: kB


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=4, help="timed steps, after one untimed")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--alpha", type=float, default=16.0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(1337)
    meta, tensors = load_gguf(args.model)
    model = Llama(meta, tensors, args.rank, args.alpha)
    vocab = tensors["output.weight"].shape[0]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.0)
    rates = []
    for step in range(args.steps + 1):
        tokens = torch.randint(vocab, (args.batch_size, args.seq_len + 1))
        start = time.perf_counter()
        logits = model(tokens[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, vocab), tokens[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step > 0:  # the first step pages the weights in and sizes the allocator
            rates.append(args.batch_size * args.seq_len / (time.perf_counter() - start))
    print(f"torch {args.threads} threads: {statistics.median(rates):.1f} tokens/s "
          f"(median of {len(rates)} steps), peak RSS {peak_rss_mb():.1f} MB")


if __name__ == "__main__":
    main()

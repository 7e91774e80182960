"""LoRA adapters from Python: an adapter file written here (llama.cpp's adapter GGUF, by
hand with struct), applied through Context.set_lora, gives the command line's
`quill generate --lora ... --lora-scale ...` bytes; taking it away gives the base model's."""
from __future__ import annotations

import random
import struct

import pytest

import quill

# stories260K's matrices the adapter changes: name, in, out
TARGETS = [("blk.0.attn_q.weight", 64, 64), ("blk.2.ffn_up.weight", 64, 172),
           ("output.weight", 64, 512)]
RANK = 4


def _string(s: str) -> bytes:
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def write_adapter(path, general_type: str = "adapter") -> None:
    """A GGUF v3 file: four string or f32 keys, then (rank, in) A and (out, rank) B in F32
    per target, drawn from a fixed seed, 32-byte aligned."""
    rng = random.Random(3)
    tensors = []
    for name, n_in, n_out in TARGETS:
        a = [rng.uniform(-0.5, 0.5) for _ in range(RANK * n_in)]
        b = [rng.uniform(-0.5, 0.5) for _ in range(n_out * RANK)]
        tensors += [(name + ".lora_a", (n_in, RANK), a), (name + ".lora_b", (RANK, n_out), b)]
    keys = [("general.architecture", 8, _string("llama")),
            ("general.type", 8, _string(general_type)),
            ("adapter.type", 8, _string("lora")),
            ("adapter.lora.alpha", 6, struct.pack("<f", 8.0))]
    out = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(keys))
    for key, kind, value in keys:
        out += _string(key) + struct.pack("<I", kind) + value
    offset, data = 0, b""
    for name, ne, values in tensors:
        out += _string(name) + struct.pack("<I", 2) + struct.pack("<QQ", *ne)
        out += struct.pack("<IQ", 0, offset)  # F32, where its data starts
        blob = struct.pack(f"<{len(values)}f", *values)
        blob += b"\0" * (-len(blob) % 32)
        data += blob
        offset += len(blob)
    out += b"\0" * (-len(out) % 32)
    path.write_bytes(out + data)


@pytest.fixture
def adapter_path(tmp_path):
    path = tmp_path / "adapter.gguf"
    write_adapter(path)
    return path


def test_set_lora_gives_the_clis_text_and_takes_it_away(ctx, model, cli, adapter_path):
    prompt, n = "Once upon a time", 24
    base = ctx.generate(prompt, max_tokens=n, temperature=0).text
    lora = quill.Lora.load(model, adapter_path)
    compared = 0
    for scale in (1.0, 0.5):
        want = cli("--prompt", prompt, "--no-echo", "--temperature", "0", "-n", str(n),
                   "--lora", str(adapter_path), "--lora-scale", str(scale))
        ctx.set_lora([(lora, scale)])
        got = ctx.generate(prompt, max_tokens=n, temperature=0).text
        assert got.encode() == want, scale
        assert got != base, scale
        compared += 1
    assert compared == 2
    ctx.set_lora([])
    assert ctx.generate(prompt, max_tokens=n, temperature=0).text == base


def test_a_bad_adapter_is_a_file_error_and_one_in_use_stays_open(ctx, model, model_path,
                                                                 tmp_path, adapter_path):
    with pytest.raises(quill.FileError, match="not an adapter"):
        quill.Lora.load(model, model_path)
    not_lora = tmp_path / "model-typed.gguf"
    write_adapter(not_lora, general_type="model")
    with pytest.raises(quill.FileError, match="general.type is 'model'"):
        quill.Lora.load(model, not_lora)
    lora = quill.Lora.load(model, adapter_path)
    ctx.set_lora([lora])
    with pytest.raises(quill.ContextError, match="applied by 1 context"):
        lora.close()
    ctx.set_lora([])
    lora.close()
    assert lora.closed
    with pytest.raises(quill.ParameterError):
        ctx.set_lora(["adapter.gguf"])

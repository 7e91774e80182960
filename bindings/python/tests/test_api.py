"""The rest of the API: metadata, sampler defaults, embeddings, explain_step, generate_batch."""
from __future__ import annotations

import base64
import json
import math
import re
import struct
import subprocess
import urllib.request
from dataclasses import fields

import pytest

import quill
from quill._lib import lib


def test_metadata_is_the_files(model, quill_bin, model_path):
    info = subprocess.run([quill_bin, "info", model_path], capture_output=True, text=True,
                          check=True).stdout
    assert model.architecture == "llama"
    assert model.vocab_size == 512 and model.context_length == 128
    assert model.embedding_size == 64 and model.n_layers == 5
    assert model.parameter_count == 292800
    assert model.chat_template is None
    assert model.bos_token == 1 and model.eos_token == 2
    assert model.description.startswith("llama, 0.29M parameters, 5 layers of 64")
    assert "512" in info and "128" in info
    assert re.fullmatch(r"\d+\.\d+\.\d+", quill.library_version())


def test_sampler_params_defaults_are_the_librarys():
    c = lib.quill_sampler_params_default()
    mine = quill.SamplerParams()
    compared = 0
    for f in fields(mine):
        if f.name in ("seed", "logit_bias", "bad_words", "samplers", "dry_sequence_breakers",
                      "json_schema"):
            continue
        assert getattr(mine, f.name) == pytest.approx(getattr(c, f.name)), f.name
        compared += 1
    assert compared == 24


def test_presets_are_the_librarys_numbers():
    creative = quill.SamplerParams.creative(seed=4)
    assert (creative.temperature, creative.top_k, creative.min_p, creative.seed) == (1.2, 0, 0.1, 4)
    assert quill.SamplerParams.deterministic().temperature == 0
    with pytest.raises(quill.ParameterError, match="wild"):
        quill.SamplerParams.preset("wild")


def quill_serve_embedding(quill_bin: str, model_path: str, text: str) -> list[float]:
    """The embedding quill serve's /v1/embeddings answers (float32 bytes, base64)."""
    server = subprocess.Popen([quill_bin, "serve", model_path, "--port", "0"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        for line in server.stdout:
            found = re.search(r"on (http://\S+) \(", line)
            if found:
                break
        else:
            raise AssertionError("quill serve did not say where it listens")
        request = urllib.request.Request(
            found.group(1) + "/v1/embeddings", method="POST",
            data=json.dumps({"input": text, "encoding_format": "base64"}).encode(),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as answer:
            raw = base64.b64decode(json.load(answer)["data"][0]["embedding"])
        return list(struct.unpack(f"<{len(raw) // 4}f", raw))
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_embed_equals_quill_serves_embedding(ctx, quill_bin, model_path):
    text = "The cat sat on the mat."
    want = quill_serve_embedding(quill_bin, model_path, text)
    got = ctx.embed(text)
    assert len(got) == len(want) == ctx.model.embedding_size
    assert got == want  # the same float32 values, bit for bit
    assert math.fsum(x * x for x in got) == pytest.approx(1, abs=1e-6)


def test_embed_last_and_unnormalized(ctx):
    mean = ctx.embed("a cat", normalize=False)
    assert math.fsum(x * x for x in mean) != pytest.approx(1, abs=1e-3)
    unit = ctx.embed("a cat")
    norm = math.sqrt(math.fsum(x * x for x in mean))
    assert [x / norm for x in mean] == pytest.approx(unit, abs=1e-6)
    assert ctx.embed("a cat", pooling="last") != unit


def test_explain_step_takes_the_chain_apart(ctx):
    step = ctx.explain_step("Once upon a time", top_n=5, top_k=10, seed=1)
    names = [s.name for s in step.stages]
    assert names[-1] == "chain"
    assert "top-k" in names and "temperature" in names
    top_k = step.stages[names.index("top-k")]
    assert top_k.n_survivors == 10 and len(top_k.candidates) == 5
    ps = [c.p for c in top_k.candidates]
    assert ps == sorted(ps, reverse=True) and sum(ps) <= 1 + 1e-6
    assert step.stages[-1].candidates[0].token in [c.token for c in step.stages[-1].candidates]
    # the token drawn is the one a generation with the same seed starts with
    first = ctx.generate("Once upon a time", 1, top_k=10, seed=1)
    assert first.text == step.piece
    assert all(c.piece == ctx.model.token_to_piece(c.token).decode() for c in top_k.candidates)


def test_explain_step_greedy_chooses_the_most_likely(ctx):
    step = ctx.explain_step("Once upon a time", temperature=0)
    chain = step.stages[-1]
    assert step.token == chain.candidates[0].token
    assert step.piece == ctx.generate("Once upon a time", 1, temperature=0).text


def test_generate_batch_greedy_is_generates_text(model):
    prompts = ["Once upon a time", "The little dog", "Tom had a red ball", "Lily"]
    with quill.Context(model, n_seq=len(prompts)) as ctx:
        batch = ctx.generate_batch(prompts, 90, temperature=0)
        single = [ctx.generate(p, 90, temperature=0) for p in prompts]
    assert len(batch) == len(prompts)
    for b, s in zip(batch, single):
        assert (b.text, b.finish_reason, b.n_tokens) == (s.text, s.finish_reason, s.n_tokens)


def test_generate_batch_stop_strings_and_seeds(model):
    with quill.Context(model, n_seq=2) as ctx:
        done = ctx.generate_batch(["Once upon a time", "The little dog"], 100, temperature=0,
                                  stop=["park", "ball"])
        alone = [ctx.generate(p, 100, temperature=0, stop=["park", "ball"])
                 for p in ("Once upon a time", "The little dog")]
        sampled = ctx.generate_batch(["Once upon a time"] * 2, 20, seed=20)
    assert [d.text for d in done] == [a.text for a in alone]
    assert [d.finish_reason for d in done] == [a.finish_reason for a in alone] == ["stop"] * 2
    # each prompt its own sampler, seeded seed + i (a sampled draw is not compared with
    # generate's: a batched forward pass may differ from a single one in the last bits)
    assert [s.seed for s in sampled] == [20, 21]


def test_a_context_sized_for_the_run(model):
    with quill.Context(model, n_ctx=64, n_seq=2, cache_type="f32") as ctx:
        assert (ctx.n_ctx, ctx.n_seq) == (64, 2)
        assert "f32" in ctx.description
        done = ctx.generate("Once upon a time", None, ignore_eos=True)
        assert done.finish_reason == "context"
        assert ctx.perf.n_generated == done.n_tokens


def test_sampler_params_layout_is_the_headers():
    """The ctypes struct must be quill.h's, field for field: its last fields read the
    defaults the header documents (a shorter or reordered struct reads other bytes)."""
    c = lib.quill_sampler_params_default()
    assert (c.temperature, c.top_k, c.n_bad_words) == (pytest.approx(0.8), 40, 0)
    assert (c.xtc_probability, c.xtc_threshold) == (0.0, pytest.approx(0.1))
    assert (c.top_n_sigma, c.dynatemp_range, c.dynatemp_exponent) == (-1.0, 0.0, 1.0)
    assert (c.mirostat, c.mirostat_tau, c.mirostat_eta) == (0, 5.0, pytest.approx(0.1))
    assert c.grammar is None and c.json_schema is None
    assert (c.dry_multiplier, c.dry_base, c.dry_allowed_length, c.dry_penalty_last_n) == (
        0.0, 1.75, 2, -1)
    breakers = [c.dry_sequence_breakers[i] for i in range(c.n_dry_sequence_breakers)]
    assert (breakers, c.min_keep) == ([b"\n", b":", b'"', b"*"], 0)


def test_guidance_at_scale_1_and_0_is_each_side_and_its_fields_are_the_headers(model):
    """The generate params' last fields read the header's defaults; guide= at
    guidance_scale 1 is the plain run of the guide then the prompt, and at 0 the prompt
    alone (docs/sampling.md), greedy."""
    c = lib.quill_generate_params_default()
    assert (c.guide, c.negative_prompt, c.guidance_seq) == (None, None, 1)
    assert c.guidance_scale == pytest.approx(1.5)
    guide, prompt = "Lily was very happy. ", "Once upon a time"
    with quill.Context(model, n_seq=2, cache_type="f32") as ctx:
        cond = ctx.generate(prompt, 40, temperature=0, guide=guide, guidance_scale=1)
        plain_cond = ctx.generate(guide + prompt, 40, temperature=0)
        uncond = ctx.generate(prompt, 40, temperature=0, guide=guide, guidance_scale=0)
        plain_uncond = ctx.generate(prompt, 40, temperature=0)
        strong = ctx.generate(prompt, 40, temperature=0, guide=guide, guidance_scale=3)
    assert cond.text == plain_cond.text and uncond.text == plain_uncond.text
    assert strong.text not in (plain_cond.text, plain_uncond.text)
    with quill.Context(model) as ctx, pytest.raises(quill.ParameterError, match="n_seq >= 2"):
        ctx.generate(prompt, 5, guide=guide)

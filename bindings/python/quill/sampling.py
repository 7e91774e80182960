"""The sampler's settings (quill_sampler_params) as a dataclass, and the C sampler made
from them.

    params = SamplerParams.preset("creative", seed=7)      # the CLI's --preset creative
    ctx.generate("Once upon a time", params=params, top_k=20)  # a keyword overrides it
"""
from __future__ import annotations

import ctypes
import json
import math
import os
import struct
from dataclasses import dataclass, field, fields, replace
from typing import Any, Mapping, Sequence

from . import _lib
from ._lib import lib
from .errors import ParameterError

PRESETS = ("deterministic", "balanced", "creative")

# The fields that are plain numbers in quill_sampler_params too, and that a preset sets.
_NUMBERS = ("temperature", "top_k", "top_p", "min_p", "typical_p", "repeat_penalty",
            "frequency_penalty", "presence_penalty", "repeat_last_n", "penalize_prompt",
            "min_keep", "dry_multiplier", "dry_base", "dry_allowed_length",
            "dry_penalty_last_n")

# The samplers added later (docs/sampling.md): plain numbers too, which no preset sets.
_NEWER = ("xtc_probability", "xtc_threshold", "top_n_sigma", "dynatemp_range",
          "dynatemp_exponent", "mirostat", "mirostat_tau", "mirostat_eta")

# The ranges `quill generate` accepts for each flag (generate/options.c): the library takes
# any float, so a value the command line would refuse is refused here before C sees it.
_RANGES: dict[str, tuple[float, float]] = {
    "temperature": (0, 100), "top_k": (0, 1 << 24), "top_p": (0, 1), "min_p": (0, 1),
    "typical_p": (0, 1), "repeat_penalty": (0, 100), "repeat_last_n": (-1, 1 << 24),
    "frequency_penalty": (-100, 100), "presence_penalty": (-100, 100),
    "xtc_probability": (0, 1), "xtc_threshold": (0, 1), "top_n_sigma": (-1, 100),
    "dynatemp_range": (0, 100), "dynatemp_exponent": (0, 100), "mirostat": (0, 2),
    "mirostat_tau": (0, 100), "mirostat_eta": (0, 100),
    "min_keep": (0, 1 << 24), "dry_multiplier": (0, 100), "dry_base": (1, 100),
    "dry_allowed_length": (0, 1 << 24), "dry_penalty_last_n": (-1, 1 << 24),
}


def _shortest(x: float | int | bool) -> float | int | bool:
    """A C float as the shortest decimal that is the same float32 (1.2, not
    1.2000000476837158); ints and bools as they are."""
    if not isinstance(x, float):
        return x
    f32 = struct.pack("f", x)
    for digits in range(6, 10):
        y = float(f"{x:.{digits}g}")
        if struct.pack("f", y) == f32:
            return y
    return x


@dataclass
class SamplerParams:
    """Every knob of the sampler chain (docs/sampling.md has the formulas). The defaults
    are quill_sampler_params_default()'s, llama.cpp's: temperature 0.8, top-k 40, top-p
    0.95, min-p 0.05, penalties and DRY off. ``seed`` None draws one from the operating
    system (the Completion says which); ``dry_sequence_breakers`` None keeps the library's
    ("\\n", ":", "\"", "*").

    >>> SamplerParams(temperature=0).temperature
    0
    """
    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    typical_p: float = 1.0
    repeat_penalty: float = 1.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    repeat_last_n: int = 64
    penalize_prompt: bool = True
    min_keep: int = 0
    dry_multiplier: float = 0.0
    dry_base: float = 1.75
    dry_allowed_length: int = 2
    dry_penalty_last_n: int = -1
    dry_sequence_breakers: Sequence[str] | None = None
    seed: int | None = None
    logit_bias: Mapping[int, float] = field(default_factory=dict)
    bad_words: Sequence[str] = ()
    samplers: Sequence[str] | str | None = None
    xtc_probability: float = 0.0
    xtc_threshold: float = 0.1
    top_n_sigma: float = -1.0
    dynatemp_range: float = 0.0
    dynatemp_exponent: float = 1.0
    mirostat: int = 0
    mirostat_tau: float = 5.0
    mirostat_eta: float = 0.1
    grammar: str | None = None
    json_schema: str | Mapping[str, Any] | bool | None = None

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "SamplerParams":
        """The numbers of a preset ("deterministic", "balanced" or "creative", as `quill
        generate --preset`), then the keywords given.

        >>> SamplerParams.preset("deterministic").temperature
        0.0
        """
        c = lib.quill_sampler_params_default()
        _lib.check(lib.quill_sampler_params_preset(ctypes.byref(c), name.encode()))
        numbers = {name: _shortest(getattr(c, name)) for name in _NUMBERS}
        return cls(**numbers).with_(**overrides)

    @classmethod
    def deterministic(cls, **overrides: Any) -> "SamplerParams":
        """SamplerParams.preset("deterministic"): greedy."""
        return cls.preset("deterministic", **overrides)

    @classmethod
    def balanced(cls, **overrides: Any) -> "SamplerParams":
        """SamplerParams.preset("balanced")."""
        return cls.preset("balanced", **overrides)

    @classmethod
    def creative(cls, **overrides: Any) -> "SamplerParams":
        """SamplerParams.preset("creative")."""
        return cls.preset("creative", **overrides)

    def with_(self, **overrides: Any) -> "SamplerParams":
        """A copy with the keywords that are not None changed (unknown ones are an error)."""
        known = {f.name for f in fields(self)}
        unknown = set(overrides) - known
        if unknown:
            raise ParameterError(f"unknown sampling setting(s): {', '.join(sorted(unknown))}")
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def validate(self) -> None:
        """Raises ParameterError for a number outside the range the CLI accepts."""
        for name, (lo, hi) in _RANGES.items():
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or math.isnan(value) or not lo <= value <= hi:
                raise ParameterError(f"{name} must be between {lo} and {hi}, got {value!r}")
        if self.repeat_penalty == 0:
            raise ParameterError("repeat_penalty must be > 0, got 0")
        if not isinstance(self.mirostat, int) or isinstance(self.mirostat, bool):
            raise ParameterError(f"mirostat must be 0, 1 or 2, got {self.mirostat!r}")
        if self.grammar is not None and not isinstance(self.grammar, str):
            raise ParameterError(f"grammar must be a GBNF text, got {self.grammar!r}")
        if self.json_schema is not None and not isinstance(self.json_schema,
                                                             (str, Mapping, bool)):
            raise ParameterError("json_schema must be a JSON Schema (a dict or its JSON "
                                 f"text), got {self.json_schema!r}")
        if self.seed is not None and not 0 <= self.seed < 1 << 64:
            raise ParameterError(f"seed must be between 0 and 2^64 - 1, got {self.seed}")

    def resolved_seed(self) -> int:
        """The seed, or a random one from the operating system when it is None."""
        return self.seed if self.seed is not None else int.from_bytes(os.urandom(4), "little")


class Sampler(_lib.Owned):
    """A C sampler (quill_sampler) for one generation; closed when done. The arrays it was
    made from are copied by quill_sampler_new, so they need not outlive the call."""

    def __init__(self, model_handle: int, params: SamplerParams, seed: int):
        self.handle = None
        params.validate()
        c = lib.quill_sampler_params_default()
        for name in _NUMBERS + _NEWER:
            setattr(c, name, getattr(params, name))
        c.seed = seed
        if params.grammar is not None:
            c.grammar = params.grammar.encode()
        schema = params.json_schema
        if schema is not None:
            c.json_schema = (schema if isinstance(schema, str) else json.dumps(schema)).encode()
        chain = params.samplers
        if chain is not None:
            c.chain = (chain if isinstance(chain, str) else ",".join(chain)).encode()
        bias = (_lib.LogitBias * max(len(params.logit_bias), 1))(
            *[_lib.LogitBias(int(t), float(b)) for t, b in params.logit_bias.items()])
        c.logit_bias, c.n_logit_bias = bias, len(params.logit_bias)
        words = [w.encode() for w in params.bad_words]
        word_array = _lib.string_array(words)
        c.bad_words, c.n_bad_words = word_array, len(words)
        breakers = [b.encode() for b in params.dry_sequence_breakers or ()]
        breaker_array = _lib.string_array(breakers)
        if params.dry_sequence_breakers is not None:
            c.dry_sequence_breakers = breaker_array
            c.n_dry_sequence_breakers = len(breakers)
        self.handle = lib.quill_sampler_new(model_handle, ctypes.byref(c))
        if not self.handle:
            raise _lib.last_error()
        self.seed = seed

    def describe(self) -> str:
        return _lib.read_text(lib.quill_sampler_describe, self.handle).decode()

    def close(self) -> None:
        if self.handle:
            lib.quill_sampler_free(self.handle)
            self.handle = None


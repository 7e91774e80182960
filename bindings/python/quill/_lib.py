"""The C library behind the package: finding libquill.so and declaring what include/quill.h
declares, for ctypes.

Every function of quill.h is called through ``ctypes.CDLL``, which releases the GIL for the
length of each C call: while a context decodes, other Python threads run. A callback from C
(quill_generate's on_token) takes the GIL back for the time it runs Python code.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
from ctypes import (POINTER, Structure, c_bool, c_char, c_char_p, c_double, c_float, c_int,
                    c_int8, c_int32, c_size_t, c_uint64, c_void_p)
from pathlib import Path

from .errors import QuillError, error_class

# The library's file name, by the soname its major version gives (the Makefile's SO_MAJOR).
SONAME = "libquill.so.0"


def _candidates() -> list[str]:
    """Where the library may be, in the order tried: $QUILL_LIBRARY; next to the package
    (a copy put there by a packager); the checkout's lib/ when the package runs from the
    source tree (bindings/python/quill -> lib/); an installed one (make install), by
    ctypes.util (ldconfig's cache) or the loader's own search path (LD_LIBRARY_PATH,
    /etc/ld.so.conf), then under /usr/local/lib, make install's default PREFIX."""
    here = Path(__file__).resolve().parent
    found = []
    if os.environ.get("QUILL_LIBRARY"):
        found.append(os.environ["QUILL_LIBRARY"])
    found.append(str(here / SONAME))
    found.append(str(here.parents[2] / "lib" / SONAME))
    installed = ctypes.util.find_library("quill")
    if installed:
        found.append(installed)
    found += [SONAME, "/usr/local/lib/" + SONAME]
    return found


def _load() -> ctypes.CDLL:
    tried = []
    env = os.environ.get("QUILL_LIBRARY")
    for path in _candidates():
        is_file = "/" in path
        if is_file and not os.path.exists(path):
            if path == env:  # asked for by name: say so rather than look elsewhere
                raise ImportError(f"QUILL_LIBRARY={env}: no such file")
            tried.append(path)
            continue
        try:
            return ctypes.CDLL(path)
        except OSError as e:
            if path == env:
                raise ImportError(f"QUILL_LIBRARY={env}: {e}") from e
            tried.append(f"{path} ({e})")
    raise ImportError("libquill.so not found; build it with `make` in the checkout, "
                      "`make install` it, or set QUILL_LIBRARY to its path. Tried: "
                      + "; ".join(tried))


lib = _load()

# ---- the structs of quill.h, field for field ------------------------------------------------

quill_token = c_int32
quill_model_p = c_void_p
quill_context_p = c_void_p
quill_sampler_p = c_void_p
quill_lora_p = c_void_p


class ModelParams(Structure):
    _fields_ = [("n_threads", c_int), ("use_mmap", c_bool), ("vocab_only", c_bool)]


class ContextParams(Structure):
    _fields_ = [("n_ctx", c_int), ("n_seq", c_int), ("n_batch", c_int), ("n_threads", c_int),
                ("cache_type", c_int)]


class Perf(Structure):
    _fields_ = [("n_prompt_tokens", c_int), ("prompt_seconds", c_double),
                ("n_generated", c_int), ("generate_seconds", c_double),
                ("first_token_seconds", c_double)]


class Batch(Structure):
    _fields_ = [("n_tokens", c_int), ("capacity", c_int), ("token", POINTER(quill_token)),
                ("pos", POINTER(c_int32)), ("seq", POINTER(c_int32)),
                ("logits", POINTER(c_int8))]


class LogitBias(Structure):
    _fields_ = [("token", quill_token), ("bias", c_float)]


class SamplerParamsC(Structure):
    _fields_ = [("temperature", c_float), ("top_k", c_int), ("top_p", c_float),
                ("min_p", c_float), ("typical_p", c_float), ("repeat_penalty", c_float),
                ("frequency_penalty", c_float), ("presence_penalty", c_float),
                ("repeat_last_n", c_int), ("penalize_prompt", c_bool), ("chain", c_char_p),
                ("seed", c_uint64), ("logit_bias", POINTER(LogitBias)),
                ("n_logit_bias", c_int), ("bad_words", POINTER(c_char_p)),
                ("n_bad_words", c_int),
                # added later at the end of the C struct, which keeps the fields above
                ("xtc_probability", c_float), ("xtc_threshold", c_float),
                ("top_n_sigma", c_float), ("dynatemp_range", c_float),
                ("dynatemp_exponent", c_float), ("mirostat", c_int),
                ("mirostat_tau", c_float), ("mirostat_eta", c_float),
                ("grammar", c_char_p),
                ("dry_multiplier", c_float), ("dry_base", c_float),
                ("dry_allowed_length", c_int), ("dry_penalty_last_n", c_int),
                ("dry_sequence_breakers", POINTER(c_char_p)),
                ("n_dry_sequence_breakers", c_int), ("min_keep", c_int),
                ("json_schema", c_char_p)]


class Candidate(Structure):
    _fields_ = [("token", quill_token), ("logit", c_float), ("p", c_float)]


class StageCandidates(Structure):
    _fields_ = [("stage", c_char_p), ("n_survivors", c_int), ("n_top", c_int),
                ("top", POINTER(Candidate))]


class ChatMessage(Structure):
    _fields_ = [("role", c_char_p), ("content", c_char_p)]


class TokenEvent(Structure):
    # piece and text are not NUL-terminated strings of their own: (pointer, length) pairs
    _fields_ = [("token", quill_token), ("piece", POINTER(c_char)), ("n_piece", c_size_t),
                ("text", POINTER(c_char)), ("n_text", c_size_t), ("logprob", c_float)]


TOKEN_CALLBACK = ctypes.CFUNCTYPE(c_bool, POINTER(TokenEvent), c_void_p)


class GenerateParams(Structure):
    _fields_ = [("max_tokens", c_int), ("stop", POINTER(c_char_p)), ("n_stop", c_int),
                ("ignore_eos", c_bool), ("add_special", c_bool), ("parse_special", c_bool),
                ("context_shift", c_bool), ("n_keep", c_int), ("seq", c_int),
                ("cancel", POINTER(c_int)), ("on_token", TOKEN_CALLBACK),
                ("user", c_void_p),
                # classifier-free guidance, added at the end of the struct in quill.h
                ("guide", c_char_p), ("negative_prompt", c_char_p),
                ("guidance_scale", c_float), ("guidance_seq", c_int)]


class BeamParams(Structure):
    _fields_ = [("beam_size", c_int), ("length_penalty", c_float), ("n_best", c_int),
                ("max_tokens", c_int), ("stop", POINTER(c_char_p)), ("n_stop", c_int),
                ("ignore_eos", c_bool), ("add_special", c_bool), ("parse_special", c_bool),
                # added later at the end of the C struct, which keeps the fields above
                ("must_include", POINTER(c_char_p)), ("n_must_include", c_int)]


class BeamResult(Structure):
    _fields_ = [("text", POINTER(c_char)), ("n_text", c_size_t), ("score", c_double),
                ("n_tokens", c_int), ("finish", c_int),
                # added later at the end of the C struct, which keeps the fields above
                ("missed", c_uint64)]


# ---- the functions ------------------------------------------------------------------------

def _declare(name: str, restype, *argtypes) -> None:
    fn = getattr(lib, name)
    fn.restype = restype
    fn.argtypes = list(argtypes)


_M, _C, _S = quill_model_p, quill_context_p, quill_sampler_p
for _name, _res, _args in [
    ("quill_version", c_char_p, ()),
    ("quill_cpu_features", c_char_p, ()),
    ("quill_last_error", c_char_p, ()),
    ("quill_last_error_kind", c_int, ()),
    ("quill_model_params_default", ModelParams, ()),
    ("quill_model_load", _M, (c_char_p, POINTER(ModelParams))),
    ("quill_model_free", None, (_M,)),
    ("quill_model_architecture", c_char_p, (_M,)),
    ("quill_model_name", c_char_p, (_M,)),
    ("quill_model_vocab_size", c_int, (_M,)),
    ("quill_model_context_length", c_int, (_M,)),
    ("quill_model_embedding_size", c_int, (_M,)),
    ("quill_model_layers", c_int, (_M,)),
    ("quill_model_parameter_count", c_uint64, (_M,)),
    ("quill_model_chat_template", c_char_p, (_M,)),
    ("quill_model_describe", c_int, (_M, c_char_p, c_size_t)),
    ("quill_tokenize", c_int, (_M, c_char_p, c_size_t, c_bool, c_bool, POINTER(quill_token),
                               c_int)),
    ("quill_token_to_piece", c_int, (_M, quill_token, c_char_p, c_size_t)),
    ("quill_detokenize", c_int, (_M, POINTER(quill_token), c_int, c_char_p, c_size_t)),
    ("quill_token_bos", quill_token, (_M,)),
    ("quill_token_eos", quill_token, (_M,)),
    ("quill_token_is_end", c_bool, (_M, quill_token)),
    ("quill_token_is_control", c_bool, (_M, quill_token)),
    ("quill_chat_format", c_int, (_M, c_char_p, POINTER(ChatMessage), c_int, c_bool, c_char_p,
                                  c_size_t)),
    ("quill_context_params_default", ContextParams, ()),
    ("quill_context_new", _C, (_M, POINTER(ContextParams))),
    ("quill_context_free", None, (_C,)),
    ("quill_context_n_ctx", c_int, (_C,)),
    ("quill_context_n_seq", c_int, (_C,)),
    ("quill_context_describe", c_int, (_C, c_char_p, c_size_t)),
    ("quill_context_perf", Perf, (_C,)),
    ("quill_lora_load", quill_lora_p, (_M, c_char_p)),
    ("quill_lora_free", None, (quill_lora_p,)),
    ("quill_context_set_lora", c_int, (_C, POINTER(quill_lora_p), POINTER(c_float), c_int)),
    ("quill_batch_new", Batch, (c_int,)),
    ("quill_batch_free", None, (POINTER(Batch),)),
    ("quill_batch_clear", None, (POINTER(Batch),)),
    ("quill_batch_add", c_int, (POINTER(Batch), quill_token, c_int, c_int, c_bool)),
    ("quill_decode", c_int, (_C, POINTER(Batch))),
    ("quill_logits", POINTER(c_float), (_C, c_int)),
    ("quill_seq_length", c_int, (_C, c_int)),
    ("quill_seq_clear", c_int, (_C, c_int)),
    ("quill_embed", c_int, (_C, c_int, POINTER(quill_token), c_int, c_int, c_bool,
                            POINTER(c_float))),
    ("quill_sampler_params_default", SamplerParamsC, ()),
    ("quill_sampler_params_preset", c_int, (POINTER(SamplerParamsC), c_char_p)),
    ("quill_sampler_new", _S, (_M, POINTER(SamplerParamsC))),
    ("quill_sampler_free", None, (_S,)),
    ("quill_sampler_sample", quill_token, (_S, POINTER(c_float))),
    ("quill_sampler_accept", c_int, (_S, quill_token, c_bool)),
    ("quill_sampler_describe", c_int, (_S, c_char_p, c_size_t)),
    ("quill_sampler_trace", c_int, (_S, c_int)),
    ("quill_sampler_stages", c_int, (_S, POINTER(StageCandidates), c_int)),
    ("quill_sampler_chosen", quill_token, (_S,)),
    ("quill_finish_reason_name", c_char_p, (c_int,)),
    ("quill_generate_params_default", GenerateParams, ()),
    ("quill_generate", c_int, (_C, _S, c_char_p, POINTER(GenerateParams), POINTER(c_int))),
    ("quill_beam_params_default", BeamParams, ()),
    ("quill_beam_search", c_int, (_C, _S, c_char_p, POINTER(BeamParams), POINTER(BeamResult),
                                  c_int)),
    ("quill_beam_results_free", None, (POINTER(BeamResult), c_int)),
]:
    _declare(_name, _res, *_args)


def last_error() -> QuillError:
    """The exception for this thread's last failed call: its class from
    quill_last_error_kind, its message quill_last_error's."""
    message = lib.quill_last_error().decode("utf-8", "replace") or "unknown error"
    return error_class(lib.quill_last_error_kind())(message)


def check(status: int) -> int:
    """status when it is not QUILL_ERROR (-1), else the exception for it."""
    if status < 0:
        raise last_error()
    return status


def read_text(call, *args) -> bytes:
    """The bytes of an snprintf-convention call: once with a guess, again with the size it
    said when that was too small."""
    cap = 256
    while True:
        buf = ctypes.create_string_buffer(cap)
        n = check(call(*args, buf, cap))
        if n < cap:
            return buf.raw[:n]
        cap = n + 1


def string_array(items: list[bytes]):
    """A C array of char pointers (const char *const *) over the bytes objects given, which
    the caller keeps alive for as long as C reads the array."""
    return (c_char_p * max(len(items), 1))(*items)


class Owned:
    """An object that holds something of the library's (a model, a context, a sampler, a
    running generation): close() lets it go, and `with` and garbage collection call close(),
    so that it is let go deterministically or, at the latest, when the object is collected.
    close() must be harmless when called twice, or on an object whose __init__ failed."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()

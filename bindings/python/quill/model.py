"""A model: the weights and the tokenizer of a GGUF file (quill_model).

    with quill.Model.load("model.gguf") as model:
        print(model.name, model.vocab_size, model.tokenize("Once upon a time"))
"""
from __future__ import annotations

import ctypes
import os
import weakref
from typing import Iterable, Mapping, Sequence

from . import _lib
from ._lib import lib
from .errors import ContextError, ParameterError

Message = Mapping[str, str]  # {"role": "user", "content": "..."}


class Model(_lib.Owned):
    """The weights of one model file, shared by the contexts made on it (quill's models
    are read-only after loading, so contexts on several threads may share one)."""

    def __init__(self, handle: int, path: str):
        """Use Model.load(path)."""
        self._handle = handle
        self.path = path
        self._contexts: weakref.WeakSet = weakref.WeakSet()
        self._loras: weakref.WeakSet = weakref.WeakSet()

    @classmethod
    def load(cls, path: str | os.PathLike, threads: int | None = None,
             use_mmap: bool = True) -> "Model":
        """Loads a GGUF file or a `quill train` run directory.

        threads: the cores its contexts compute on (None: every core); use_mmap False reads
        every page in now instead of as it is first touched.

        >>> model = quill.Model.load("model.gguf", threads=2)
        """
        p = lib.quill_model_params_default()
        if threads is not None:
            if threads < 1:
                raise ParameterError(f"threads must be >= 1, got {threads}")
            p.n_threads = threads
        p.use_mmap = use_mmap
        path = os.fspath(path)
        handle = lib.quill_model_load(path.encode(), ctypes.byref(p))
        if not handle:
            raise _lib.last_error()
        return cls(handle, path)

    @property
    def handle(self) -> int:
        """The quill_model pointer; ContextError once the model is closed."""
        if not self._handle:
            raise ContextError("the model is closed")
        return self._handle

    def close(self) -> None:
        """Frees the model, and first every context still open on it and then every LoRA
        adapter loaded for it (they cannot outlive it). Called by `with` and at garbage
        collection; closing twice is harmless."""
        for ctx in list(self._contexts):
            ctx.close()
        for lora in list(self._loras):
            lora.close()
        if self._handle:
            lib.quill_model_free(self._handle)
            self._handle = None

    @property
    def closed(self) -> bool:
        return not self._handle

    def __repr__(self) -> str:
        return f"<quill.Model {self.path!r}{' closed' if self.closed else ''}>"

    # ---- metadata ----

    @property
    def architecture(self) -> str:
        """"llama"."""
        return lib.quill_model_architecture(self.handle).decode()

    @property
    def name(self) -> str:
        """general.name, or "" when the file has none."""
        return lib.quill_model_name(self.handle).decode("utf-8", "replace")

    @property
    def vocab_size(self) -> int:
        return lib.quill_model_vocab_size(self.handle)

    @property
    def context_length(self) -> int:
        """The positions the model was trained on."""
        return lib.quill_model_context_length(self.handle)

    @property
    def embedding_size(self) -> int:
        """The residual width: the length of Context.embed's vectors."""
        return lib.quill_model_embedding_size(self.handle)

    @property
    def n_layers(self) -> int:
        return lib.quill_model_layers(self.handle)

    @property
    def parameter_count(self) -> int:
        return lib.quill_model_parameter_count(self.handle)

    @property
    def chat_template(self) -> str | None:
        """The Jinja source of tokenizer.chat_template, None when the file has none."""
        t = lib.quill_model_chat_template(self.handle)
        return t.decode("utf-8", "replace") if t is not None else None

    @property
    def description(self) -> str:
        """One line: architecture, size, weight type, vocabulary and context."""
        return _lib.read_text(lib.quill_model_describe, self.handle).decode()

    @property
    def bos_token(self) -> int:
        """The begin-of-text id, -1 when the vocabulary has none."""
        return lib.quill_token_bos(self.handle)

    @property
    def eos_token(self) -> int:
        return lib.quill_token_eos(self.handle)

    # ---- tokens and text ----

    def tokenize(self, text: str, add_bos: bool = True, parse_special: bool = False) -> list[int]:
        """The token ids of text; a bos first when add_bos and the model wants one;
        parse_special turns control-token text ("<|im_start|>") into its token.

        >>> model.tokenize("Once upon a time")
        [1, 403, 407, 261, 378]
        """
        data = text.encode()
        cap = len(data) + 2  # a byte is at most one token, and one bos
        ids = (_lib.quill_token * cap)()
        n = _lib.check(lib.quill_tokenize(self.handle, data, len(data), add_bos, parse_special,
                                          ids, cap))
        if n > cap:
            ids = (_lib.quill_token * n)()
            lib.quill_tokenize(self.handle, data, len(data), add_bos, parse_special, ids, n)
        return list(ids[:n])

    def detokenize(self, ids: Sequence[int]) -> str:
        """The text of token ids (bytes that are not UTF-8 become U+FFFD).

        >>> model.detokenize(model.tokenize("Once upon a time"))
        'Once upon a time'
        """
        arr = (_lib.quill_token * max(len(ids), 1))(*ids)
        return _lib.read_text(lib.quill_detokenize, self.handle, arr, len(ids)).decode(
            "utf-8", "replace")

    def token_to_piece(self, token: int) -> bytes:
        """The bytes one token stands for (may be part of a UTF-8 character)."""
        return _lib.read_text(lib.quill_token_to_piece, self.handle, token)

    def is_end_token(self, token: int) -> bool:
        """True for eos, or eot where the vocabulary has one."""
        return bool(lib.quill_token_is_end(self.handle, token))

    def apply_chat_template(self, messages: Iterable[Message], add_generation_prompt: bool = True,
                            template: str | None = None) -> str:
        """The conversation in the model's chat format (template overrides it: "chatml",
        "llama2", "llama3", "zephyr", "mistral", "gemma", "phi3"); add_generation_prompt
        opens the assistant's turn.

        >>> model.apply_chat_template([{"role": "user", "content": "Hi"}], template="chatml")
        '<|im_start|>user\\nHi<|im_end|>\\n<|im_start|>assistant\\n'
        """
        msgs = list(messages)
        for m in msgs:
            if not isinstance(m, Mapping) or "role" not in m or "content" not in m:
                raise ParameterError(f"a message is a mapping with role and content, got {m!r}")
        encoded = [(str(m["role"]).encode(), str(m["content"]).encode()) for m in msgs]
        arr = (_lib.ChatMessage * max(len(msgs), 1))(*[_lib.ChatMessage(r, c) for r, c in encoded])
        name = template.encode() if template is not None else None
        return _lib.read_text(lib.quill_chat_format, self.handle, name, arr, len(msgs),
                              add_generation_prompt).decode("utf-8", "replace")

"""A LoRA adapter (quill_lora): a low-rank change to a model's weights that a context
applies as it runs, W x + scale * alpha / rank * B (A x), without changing the model.

    with quill.Model.load("model.gguf") as model, quill.Context(model) as ctx:
        adapter = quill.Lora.load(model, "adapter.gguf")
        ctx.set_lora([(adapter, 0.5)])
        print(ctx.generate("Once upon a time", temperature=0).text)
"""
from __future__ import annotations

import os
import weakref

from . import _lib
from ._lib import lib
from .errors import ContextError


class Lora(_lib.Owned):
    """llama.cpp's LoRA adapter GGUF, loaded for one model and checked against it."""

    def __init__(self, handle: int, model, path: str):
        """Use Lora.load(model, path)."""
        self._handle = handle
        self.model = model
        self.path = path
        self._users: weakref.WeakSet = weakref.WeakSet()  # the contexts that apply it

    @classmethod
    def load(cls, model, path: str | os.PathLike) -> "Lora":
        """Reads the adapter file for model: FileError, naming the tensor, for an adapter
        of another architecture or another model's shapes, a lora_a without its lora_b,
        or a file that is not an adapter."""
        path = os.fspath(path)
        handle = lib.quill_lora_load(model.handle, path.encode())
        if not handle:
            raise _lib.last_error()
        lora = cls(handle, model, path)
        model._loras.add(lora)
        return lora

    @property
    def handle(self) -> int:
        """The quill_lora pointer; ContextError once the adapter is closed."""
        if not self._handle:
            raise ContextError("the adapter is closed")
        return self._handle

    def close(self) -> None:
        """Frees the adapter: ContextError while a context applies it (set_lora([]) on it
        first). Called by `with` and at garbage collection; closing twice is harmless."""
        users = [ctx for ctx in self._users if not ctx.closed and self in ctx.loras]
        if users:
            raise ContextError(f"the adapter {self.path} is applied by {len(users)} "
                               "context(s): take it away with set_lora first")
        if self._handle:
            lib.quill_lora_free(self._handle)
            self._handle = None

    @property
    def closed(self) -> bool:
        return not self._handle

    def __repr__(self) -> str:
        return f"<quill.Lora {self.path!r}{' closed' if self.closed else ''}>"

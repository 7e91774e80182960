"""quill's exceptions: one class per kind of error quill_last_error_kind() reports.

    try:
        quill.Model.load("missing.gguf")
    except quill.FileError as e:
        print(e)        # the library's one line: what went wrong, with the path
"""
from __future__ import annotations


class QuillError(Exception):
    """An error from libquill (its message is quill_last_error()'s), or one the binding
    found before calling it: a closed object, a setting out of range."""


class FileError(QuillError):
    """A file could not be read or is not what it should be (a missing model, a text file
    given as a GGUF)."""


class ParameterError(QuillError, ValueError):
    """A setting out of its range or a bad argument (temperature=-1, n_ctx=-1)."""


class ContextError(QuillError):
    """The context cannot do it: closed, busy on another thread, or full."""


class OutOfMemoryError(QuillError, MemoryError):
    """The library ran out of memory (a KV cache larger than the machine)."""


# quill_error_kind's values (quill.h), in order: NONE, FILE, PARAMETER, CONTEXT, MEMORY
_BY_KIND = {1: FileError, 2: ParameterError, 3: ContextError, 4: OutOfMemoryError}


def error_class(kind: int) -> type[QuillError]:
    """The exception class of a quill_error_kind; QuillError itself for one it does not
    know."""
    return _BY_KIND.get(kind, QuillError)

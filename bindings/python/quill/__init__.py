"""quill from Python: load a GGUF model, generate, stream, chat, search and embed, over
libquill.so (include/quill.h) through the standard library's ctypes.

    import quill

    with quill.Model.load("model.gguf") as model, quill.Context(model) as ctx:
        print(ctx.generate("Once upon a time", max_tokens=50, temperature=0).text)
"""
from ._lib import lib as _clib
from .context import (Beam, Candidate, Completion, Context, Perf, Sampling, Stage, Step,
                      Stream)
from .errors import (ContextError, FileError, OutOfMemoryError, ParameterError,
                     QuillError)
from .lora import Lora
from .model import Message, Model
from .sampling import PRESETS, SamplerParams

__all__ = ["Beam", "Candidate", "Completion", "Context", "ContextError", "FileError",
           "Lora", "Message", "Model", "OutOfMemoryError", "ParameterError", "Perf", "PRESETS",
           "QuillError", "SamplerParams", "Sampling", "Stage", "Step", "Stream",
           "cpu_features", "library_version"]

__version__ = "0.1.0"


def library_version() -> str:
    """The version of the libquill.so loaded, e.g. "0.1.0"."""
    return _clib.quill_version().decode()


def cpu_features() -> str:
    """The CPU features the kernels use and the matrix library in use."""
    return _clib.quill_cpu_features().decode()

"""A context: a KV cache on a model, and everything that runs text through it.

    with quill.Context(model, n_ctx=256) as ctx:
        done = ctx.generate("Once upon a time", max_tokens=50, temperature=0)
        print(done.text, done.finish_reason)
        for piece in ctx.stream("Once upon a time", max_tokens=50):
            print(piece, end="", flush=True)

Each call starts from an empty cache (sequence 0, or 0..n-1 for the calls that use
several): a call's text does not depend on the calls before it.
"""
from __future__ import annotations

import ctypes
import queue
import threading
import weakref
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterator, Sequence, TypedDict

from . import _lib
from ._lib import lib
from .errors import ContextError, ParameterError, QuillError
from .lora import Lora
from .model import Message, Model
from .sampling import Sampler, SamplerParams

if TYPE_CHECKING:
    from typing_extensions import Unpack

_CACHE_TYPES = {"default": 0, "f32": 1, "f16": 2, "q8_0": 3}  # quill_cache_type
_POOLINGS = {"mean": 0, "last": 1}                             # quill_pooling


class Sampling(TypedDict, total=False):
    """The sampling keywords every generating call takes: SamplerParams' fields."""
    temperature: float
    top_k: int
    top_p: float
    min_p: float
    typical_p: float
    repeat_penalty: float
    frequency_penalty: float
    presence_penalty: float
    repeat_last_n: int
    penalize_prompt: bool
    min_keep: int
    dry_multiplier: float
    dry_base: float
    dry_allowed_length: int
    dry_penalty_last_n: int
    dry_sequence_breakers: Sequence[str]
    seed: int
    logit_bias: dict[int, float]
    bad_words: Sequence[str]
    samplers: Sequence[str] | str


@dataclass
class Completion:
    """A generated text: why it ended ("length", "eos", "stop", "context", "cancelled"),
    how many tokens it took and the seed its draws used."""
    text: str
    finish_reason: str
    n_tokens: int
    seed: int


@dataclass
class Beam:
    """One result of a beam search: its text, its score (log-probability sum / length **
    length_penalty), its tokens, why it ended, and the words of must_include its text
    lacks (none when it holds them all)."""
    text: str
    score: float
    n_tokens: int
    finish_reason: str
    missed: list[str] = field(default_factory=list)


@dataclass
class Candidate:
    """A token still in the running after a stage: its text, logit and probability in the
    softmax of the stage's survivors."""
    token: int
    piece: str
    logit: float
    p: float


@dataclass
class Stage:
    """What one stage of the chain left: its name ("top-k", ...; "chain" for the final
    list the draw used), how many candidates survived, and the most likely of them."""
    name: str
    n_survivors: int
    candidates: list[Candidate]


@dataclass
class Step:
    """One sampling step taken apart: the token chosen and the stages in chain order."""
    token: int
    piece: str
    stages: list[Stage]


@dataclass
class Perf:
    """What generations have done on a context (quill_context_perf)."""
    n_prompt_tokens: int
    prompt_seconds: float
    n_generated: int
    generate_seconds: float
    first_token_seconds: float


def _finish_name(reason: int) -> str:
    return lib.quill_finish_reason_name(reason).decode()


def _text(ptr: ctypes.POINTER(ctypes.c_char), n: int) -> bytes:
    return ctypes.string_at(ptr, n) if n else b""


@dataclass
class Guidance:
    """Classifier-free guidance (docs/sampling.md): guide before the prompt on the
    conditional side (sequence 0), negative_prompt before it on the unconditional side
    (sequence 1, so the context needs n_seq >= 2); the row sampled is uncond + scale *
    (cond - uncond). Either text None: none on that side; both None: no guidance."""
    guide: str | None = None
    negative_prompt: str | None = None
    scale: float = 1.5

    def __bool__(self) -> bool:
        return self.guide is not None or self.negative_prompt is not None

    def encoded(self) -> tuple[bytes | None, bytes | None]:
        return tuple(None if t is None else t.encode() for t in (self.guide,
                                                                 self.negative_prompt))


class _Generation:
    """One quill_generate call's settings as C structs, kept alive for as long as C reads
    them: the stop strings, the cancel flag, the callback."""

    def __init__(self, max_tokens: int | None, stop: Sequence[str] | None, ignore_eos: bool,
                 add_special: bool = True, parse_special: bool = False,
                 guidance: Guidance | None = None):
        if max_tokens is not None and max_tokens < 0:
            raise ParameterError(f"max_tokens must be >= 0 (None: no limit), got {max_tokens}")
        self.stops = [s.encode() for s in (stop or ())]
        if any(not s for s in self.stops):
            raise ParameterError("a stop string is empty")
        self.stop_array = _lib.string_array(self.stops)
        self.cancel = ctypes.c_int(0)
        self.n_tokens = 0
        self.outcome: object = None  # the finish reason, or the QuillError, once it has run
        # what each event's text goes to; False from it stops the generation (cancelled)
        self.on_text: Callable[[bytes], bool] = lambda text: True

        def on_token(ev, _user) -> bool:
            e = ev.contents
            if e.token >= 0:
                self.n_tokens += 1
            return self.on_text(_text(e.text, e.n_text))

        self.callback = _lib.TOKEN_CALLBACK(on_token)
        p = lib.quill_generate_params_default()
        p.max_tokens = -1 if max_tokens is None else max_tokens
        p.stop, p.n_stop = self.stop_array, len(self.stops)
        p.ignore_eos, p.add_special, p.parse_special = ignore_eos, add_special, parse_special
        p.cancel = ctypes.pointer(self.cancel)
        p.on_token = self.callback
        if guidance:  # the encoded texts live as long as this object, as C reads them
            self.guidance_texts = guidance.encoded()
            p.guide, p.negative_prompt = self.guidance_texts
            p.guidance_scale = guidance.scale
        self.params = p

    def run(self, ctx: int, sampler: Sampler, prompt: str) -> str:
        """Runs quill_generate (the GIL released but in the callback); the finish reason,
        or the library's error raised."""
        finish = ctypes.c_int(0)
        _lib.check(lib.quill_generate(ctx, sampler.handle, prompt.encode(),
                                      ctypes.byref(self.params), ctypes.byref(finish)))
        return _finish_name(finish.value)


class Stream(_lib.Owned):
    """The pieces of a generation as they come: an iterator of strings (whole UTF-8
    characters; the pieces joined are Context.generate's text). quill_generate runs on a
    thread of its own and hands each piece over through a queue. Leaving the loop early
    (`break`), close() or `with` cancels it; finish_reason and n_tokens are set once it has
    ended.

        for piece in ctx.stream("Once upon a time", max_tokens=100):
            print(piece, end="")
    """

    # The generating thread runs at most this many pieces ahead of the reader, so that a
    # reader who stops early stops the generation early too.
    AHEAD = 16

    def __init__(self, ctx: "Context", prompt: str, gen: _Generation, sampler: Sampler):
        """Use Context.stream. Starts the generating thread on ctx, which the caller has
        reserved (Context._acquire) and the thread releases when done."""
        self.finish_reason: str | None = None
        self.n_tokens = 0
        self.seed = sampler.seed
        self._gen = gen
        q: queue.Queue = queue.Queue(maxsize=self.AHEAD)
        closed = threading.Event()
        self._queue, self._closed = q, closed
        gen.on_text = lambda text: Stream._offer(q, closed, text)
        self._thread = threading.Thread(target=Stream._produce, name="quill-stream", daemon=True,
                                        args=(ctx, prompt, gen, sampler, (q, closed)))
        self._thread.start()

    @staticmethod
    def _produce(ctx: "Context", prompt: str, gen: _Generation, sampler: Sampler,
                 state: tuple) -> None:
        """The generating thread: quill_generate, each piece into the queue, then the
        outcome (a finish reason or an exception), kept in gen.outcome as well. It holds no
        reference to the Stream, so that a reader dropping the stream closes it."""
        q, closed = state
        try:
            gen.outcome = gen.run(ctx.handle, sampler, prompt)
        except QuillError as e:
            gen.outcome = e
        finally:
            sampler.close()
            ctx._release()
        Stream._put(q, closed, _End(gen.outcome, gen.n_tokens))

    @staticmethod
    def _offer(q: queue.Queue, closed: threading.Event, piece: bytes) -> bool:
        """The callback's side: True to go on, False (stop) once the reader has closed the
        stream."""
        if piece:
            return Stream._put(q, closed, piece.decode("utf-8", "replace"))
        return not closed.is_set()

    @staticmethod
    def _put(q: queue.Queue, closed: threading.Event, item: object) -> bool:
        """Puts item into the queue, waiting while the reader is AHEAD pieces behind; False,
        without putting it, once the reader has closed the stream (looked at every 50 ms,
        so that a generator waiting for room sees it)."""
        while not closed.is_set():
            try:
                q.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> "Stream":
        return self

    def __next__(self) -> str:
        if self.finish_reason is not None:
            raise StopIteration
        item = self._queue.get()
        if isinstance(item, _End):
            self._thread.join()
            self.n_tokens = item.n_tokens
            if isinstance(item.outcome, QuillError):
                self.finish_reason = "error"
                raise item.outcome
            self.finish_reason = item.outcome
            raise StopIteration
        return item

    def text(self) -> str:
        """The rest of the stream, joined."""
        return "".join(self)

    def close(self) -> None:
        """Cancels the generation if it is still running and waits for its thread. Its
        finish is then "cancelled", or how it ended if it had ended before."""
        if self.finish_reason is not None or not hasattr(self, "_thread"):
            return
        self._closed.set()
        self._gen.cancel.value = 1
        self._thread.join()
        outcome = self._gen.outcome
        self.finish_reason = outcome if isinstance(outcome, str) else "error"
        self.n_tokens = self._gen.n_tokens


@dataclass
class _End:
    outcome: object  # the finish reason, or the QuillError
    n_tokens: int


class Context(_lib.Owned):
    """A KV cache of n_ctx positions for each of n_seq sequences on a model, and the
    calls that generate with it. Used by one thread at a time (a second thread's call
    while one runs is a ContextError); several contexts on one model may run on several
    threads at once.

        ctx = quill.Context(model, n_ctx=512, n_seq=4, cache_type="f16")

    n_ctx None: the model's context length; cache_type "default" (the file's own
    precision), "f32", "f16" or "q8_0"; threads None: the model's.
    """

    def __init__(self, model: Model, n_ctx: int | None = None, n_seq: int = 1,
                 cache_type: str = "default", threads: int | None = None):
        self._handle = None
        self._stream: weakref.ref | None = None
        self._lock = threading.Lock()
        self.loras: tuple[Lora, ...] = ()  # the adapters it applies (set_lora)
        p = lib.quill_context_params_default()
        if n_ctx is not None and (not isinstance(n_ctx, int) or n_ctx < 1):
            raise ParameterError(f"n_ctx must be >= 1 (None: the model's {model.context_length}),"
                                 f" got {n_ctx!r}")
        if not isinstance(n_seq, int) or n_seq < 1:
            raise ParameterError(f"n_seq must be >= 1, got {n_seq!r}")
        if cache_type not in _CACHE_TYPES:
            raise ParameterError(f"cache_type must be one of {', '.join(_CACHE_TYPES)}, "
                                 f"got {cache_type!r}")
        if threads is not None and threads < 1:
            raise ParameterError(f"threads must be >= 1, got {threads}")
        p.n_ctx, p.n_seq = n_ctx or 0, n_seq
        p.cache_type = _CACHE_TYPES[cache_type]
        p.n_threads = threads or 0
        handle = lib.quill_context_new(model.handle, ctypes.byref(p))
        if not handle:
            raise _lib.last_error()
        self._handle = handle
        self.model = model
        model._contexts.add(self)

    # ---- life ----

    @property
    def handle(self) -> int:
        """The quill_context pointer; ContextError once the context is closed."""
        if not self._handle:
            raise ContextError("the context is closed")
        return self._handle

    @property
    def closed(self) -> bool:
        return not self._handle

    def close(self) -> None:
        """Frees the KV cache (a stream still running is cancelled first). Called by
        `with` and at garbage collection; closing twice is harmless."""
        stream = self._stream() if self._stream else None
        if stream is not None:
            stream.close()
        if self._handle:
            with self._lock:  # waits for a call running on another thread
                lib.quill_context_free(self._handle)
                self._handle = None

    def _acquire(self) -> int:
        """The handle, reserved for one call: ContextError when closed or busy."""
        handle = self.handle
        if not self._lock.acquire(blocking=False):
            raise ContextError("the context is busy (a stream or a call on another thread is "
                               "using it; a context serves one call at a time)")
        if not self._handle:
            self._lock.release()
            raise ContextError("the context is closed")
        return handle

    def _release(self) -> None:
        self._lock.release()

    @contextmanager
    def _using(self) -> Iterator[int]:
        handle = self._acquire()
        try:
            yield handle
        finally:
            self._release()

    @property
    def n_ctx(self) -> int:
        return lib.quill_context_n_ctx(self.handle)

    @property
    def n_seq(self) -> int:
        return lib.quill_context_n_seq(self.handle)

    @property
    def description(self) -> str:
        """One line on the KV cache: its bytes, type and positions."""
        return _lib.read_text(lib.quill_context_describe, self.handle).decode()

    @property
    def perf(self) -> Perf:
        """Tokens and seconds of the generations so far (prompt and generated)."""
        p = lib.quill_context_perf(self.handle)
        return Perf(p.n_prompt_tokens, p.prompt_seconds, p.n_generated, p.generate_seconds,
                    p.first_token_seconds)

    # ---- adapters ----

    def set_lora(self, adapters: Sequence[Lora | tuple[Lora, float]]) -> None:
        """The LoRA adapters every later decode applies, each a Lora (scale 1) or a
        (Lora, scale) pair, in place of those set before; [] takes them all away
        (quill_context_set_lora). The cache keeps what was computed before: the text
        calls (generate, stream, ...) start from an empty sequence anyway.

        >>> ctx.set_lora([(quill.Lora.load(model, "adapter.gguf"), 0.5)])
        """
        pairs = [a if isinstance(a, tuple) else (a, 1.0) for a in adapters]
        for lora, scale in pairs:
            if not isinstance(lora, Lora) or not isinstance(scale, (int, float)):
                raise ParameterError(f"an adapter is a quill.Lora or a (quill.Lora, scale) "
                                     f"pair, got {(lora, scale)!r}")
        n = len(pairs)
        handles = (_lib.quill_lora_p * max(n, 1))(*[lora.handle for lora, _ in pairs])
        scales = (ctypes.c_float * max(n, 1))(*[scale for _, scale in pairs])
        with self._using() as handle:
            _lib.check(lib.quill_context_set_lora(handle, handles, scales, n))
        self.loras = tuple(lora for lora, _ in pairs)
        for lora in self.loras:
            lora._users.add(self)

    # ---- generating ----

    def _sampler(self, params: SamplerParams | None, sampling: dict, offset: int = 0) -> Sampler:
        settings = (params or SamplerParams()).with_(**sampling)
        return Sampler(self.model.handle, settings, settings.resolved_seed() + offset)

    def _clear(self, handle: int, n: int = 1) -> None:
        for seq in range(n):
            _lib.check(lib.quill_seq_clear(handle, seq))

    def generate(self, prompt: str, max_tokens: int | None = 256, *,
                 stop: Sequence[str] | None = None, ignore_eos: bool = False,
                 params: SamplerParams | None = None, guide: str | None = None,
                 negative_prompt: str | None = None, guidance_scale: float = 1.5,
                 **sampling: Unpack[Sampling]) -> Completion:
        """Continues prompt: up to max_tokens tokens (None: to the end of the text or the
        context), ending before the first stop string. The sampling keywords (temperature,
        top_k, top_p, min_p, typical_p, repeat_penalty, frequency_penalty,
        presence_penalty, repeat_last_n, penalize_prompt, seed, logit_bias={id: bias},
        bad_words=[...], samplers=[stage, ...]) change params (default SamplerParams()).
        guide and negative_prompt (texts before the prompt on the conditional and the
        unconditional side) with guidance_scale turn on classifier-free guidance
        (docs/sampling.md); the context then needs n_seq >= 2.

        >>> ctx.generate("Once upon a time", max_tokens=20, temperature=0)
        Completion(text=', there was a little girl named Lily...', finish_reason='length',
                   n_tokens=20, seed=...)
        """
        return self._generate(prompt, max_tokens, stop, ignore_eos, params, sampling,
                              guidance=Guidance(guide, negative_prompt, guidance_scale))

    def _generate(self, prompt: str, max_tokens: int | None, stop: Sequence[str] | None,
                  ignore_eos: bool, params: SamplerParams | None, sampling: dict,
                  add_special: bool = True, parse_special: bool = False,
                  guidance: Guidance | None = None) -> Completion:
        pieces: list[bytes] = []
        gen = _Generation(max_tokens, stop, ignore_eos, add_special, parse_special, guidance)

        def collect(text: bytes) -> bool:
            pieces.append(text)
            return True

        gen.on_text = collect
        with self._sampler(params, sampling) as sampler, self._using() as handle:
            self._clear(handle)
            finish = gen.run(handle, sampler, prompt)
        return Completion(b"".join(pieces).decode("utf-8", "replace"), finish, gen.n_tokens,
                          sampler.seed)

    def stream(self, prompt: str, max_tokens: int | None = 256, *,
               stop: Sequence[str] | None = None, ignore_eos: bool = False,
               params: SamplerParams | None = None,
               **sampling: Unpack[Sampling]) -> Stream:
        """generate's text piece by piece, as it is generated; `break` cancels.

        >>> for piece in ctx.stream("Once upon a time", max_tokens=20):
        ...     print(piece, end="", flush=True)
        """
        gen = _Generation(max_tokens, stop, ignore_eos)
        sampler = self._sampler(params, sampling)
        try:
            handle = self._acquire()
        except QuillError:
            sampler.close()
            raise
        try:
            self._clear(handle)
        except QuillError:
            sampler.close()
            self._release()
            raise
        s = Stream(self, prompt, gen, sampler)
        self._stream = weakref.ref(s)
        return s

    def chat(self, messages: Sequence[Message], max_tokens: int | None = 256, *,
             template: str | None = None, stop: Sequence[str] | None = None,
             params: SamplerParams | None = None,
             **sampling: Unpack[Sampling]) -> Completion:
        """The assistant's reply to a conversation, in the model's chat format (template:
        a family name to use instead, as Model.apply_chat_template). The turn's end token
        ends it (finish "eos").

        >>> ctx.chat([{"role": "user", "content": "Tell me a story"}], template="chatml")
        """
        text = self.model.apply_chat_template(messages, True, template)
        # A template that writes bos itself gets none added (quill generate does the same).
        bos = self.model.bos_token
        writes_bos = bos >= 0 and text.encode().startswith(self.model.token_to_piece(bos))
        return self._generate(text, max_tokens, stop, False, params, sampling,
                              add_special=not writes_bos, parse_special=True)

    def beam_search(self, prompt: str, beam_size: int = 4, length_penalty: float = 1.0, *,
                    n_best: int = 1, max_tokens: int = 256, stop: Sequence[str] | None = None,
                    ignore_eos: bool = False, must_include: Sequence[str] | None = None,
                    params: SamplerParams | None = None,
                    **sampling: Unpack[Sampling]) -> list[Beam]:
        """The n_best best continuations by beam search (quill_beam_search, what `quill
        generate --beam-size` runs), best first. The context needs n_seq >= beam_size; the
        sampling keywords give the penalties, logit bias and bad words. must_include: words
        or phrases each text must hold (lexically constrained search, `quill generate
        --must-include`); a text that could not fit them all in max_tokens names those it
        lacks in its Beam.missed.

        >>> ctx = quill.Context(model, n_seq=4)
        >>> ctx.beam_search("Once upon a time", beam_size=4)[0].text
        >>> ctx.beam_search("Once upon a time", must_include=["dragon", "castle"])[0].missed
        []
        """
        if not 1 <= n_best <= beam_size:
            raise ParameterError(f"n_best must be between 1 and beam_size ({beam_size}), "
                                 f"got {n_best}")
        if max_tokens < 0:
            raise ParameterError(f"max_tokens must be >= 0, got {max_tokens}")
        p = lib.quill_beam_params_default()
        p.beam_size, p.length_penalty, p.n_best, p.max_tokens = (beam_size, length_penalty,
                                                                 n_best, max_tokens)
        stops = [s.encode() for s in (stop or ())]
        stop_array = _lib.string_array(stops)
        p.stop, p.n_stop, p.ignore_eos = stop_array, len(stops), ignore_eos
        words = list(must_include or ())
        word_array = _lib.string_array([w.encode() for w in words])
        p.must_include, p.n_must_include = word_array, len(words)
        out = (_lib.BeamResult * n_best)()
        with self._sampler(params, sampling) as sampler, self._using() as handle:
            n = _lib.check(lib.quill_beam_search(handle, sampler.handle, prompt.encode(),
                                                 ctypes.byref(p), out, n_best))
        try:
            return [Beam(_text(r.text, r.n_text).decode("utf-8", "replace"), r.score,
                         r.n_tokens, _finish_name(r.finish),
                         [w for i, w in enumerate(words) if r.missed >> i & 1])
                    for r in out[:n]]
        finally:
            lib.quill_beam_results_free(out, n)

    def embed(self, text: str, pooling: str = "mean", normalize: bool = True) -> list[float]:
        """The embedding of text: the final hidden states (after the output norm) of its
        tokens, pooled ("mean", or "last": the last token's) and scaled to length 1 when
        normalize; Model.embedding_size floats. What quill serve's /v1/embeddings answers.

        >>> len(ctx.embed("a cat")) == model.embedding_size
        True
        """
        if pooling not in _POOLINGS:
            raise ParameterError(f"pooling must be mean or last, got {pooling!r}")
        ids = self.model.tokenize(text)
        arr = (_lib.quill_token * max(len(ids), 1))(*ids)
        out = (ctypes.c_float * self.model.embedding_size)()
        with self._using() as handle:
            _lib.check(lib.quill_embed(handle, 0, arr, len(ids), _POOLINGS[pooling], normalize,
                                       out))
        return list(out)

    def explain_step(self, prompt: str, top_n: int = 8, *, params: SamplerParams | None = None,
                     **sampling: Unpack[Sampling]) -> Step:
        """The next token after prompt, taken apart: the top_n (at most 8) most likely
        candidates left after each stage of the chain, in order, then "chain" (the list
        the draw used), and the token drawn. Plain data, for a table or a plot.

        >>> step = ctx.explain_step("Once upon a time", temperature=0.8, top_k=10, seed=1)
        >>> [(s.name, s.n_survivors) for s in step.stages]
        """
        if not 1 <= top_n <= 8:
            raise ParameterError(f"top_n must be between 1 and 8, got {top_n}")
        gen = _Generation(1, None, True)
        with self._sampler(params, sampling) as sampler, self._using() as handle:
            _lib.check(lib.quill_sampler_trace(sampler.handle, top_n))
            self._clear(handle)
            gen.run(handle, sampler, prompt)
            stages = (_lib.StageCandidates * 64)()
            n = _lib.check(lib.quill_sampler_stages(sampler.handle, stages, 64))
            chosen = lib.quill_sampler_chosen(sampler.handle)
            return Step(chosen, self._piece(chosen),
                        [Stage(st.stage.decode(), st.n_survivors,
                               [Candidate(c.token, self._piece(c.token), c.logit, c.p)
                                for c in st.top[:st.n_top]])
                         for st in stages[:min(n, 64)]])

    def _piece(self, token: int) -> str:
        return self.model.token_to_piece(token).decode("utf-8", "replace")

    def generate_batch(self, prompts: Sequence[str], max_tokens: int = 256, *,
                       stop: Sequence[str] | None = None, ignore_eos: bool = False,
                       params: SamplerParams | None = None,
                       **sampling: Unpack[Sampling]) -> list[Completion]:
        """Continues several prompts side by side, prompt i on sequence i with a sampler of
        its own seeded seed + i (as `quill generate --num-samples`): each step is one
        forward pass (quill_decode) for all of them, which reads the weights once. The
        context needs n_seq >= len(prompts).

        Built from quill_batch / quill_decode / quill_sampler_sample in Python, it has what
        those give: the same sampling keywords, max_tokens, ignore_eos, and stop strings
        (each text cut before its first one, found in the text as a whole). No context
        shift (a full sequence ends with finish "context"). A greedy text is generate's.

        >>> ctx = quill.Context(model, n_seq=2)
        >>> [c.text for c in ctx.generate_batch(["Once upon a time", "The cat"], 20)]
        """
        if max_tokens < 0:
            raise ParameterError(f"max_tokens must be >= 0, got {max_tokens}")
        stops = [s.encode() for s in (stop or ())]
        if any(not s for s in stops):
            raise ParameterError("a stop string is empty")
        prompt_ids = [self.model.tokenize(p) for p in prompts]
        samplers = [self._sampler(params, sampling, i) for i in range(len(prompts))]
        try:
            with self._using() as handle:
                if len(prompts) > lib.quill_context_n_seq(handle):
                    raise ParameterError(f"{len(prompts)} prompts need a context of n_seq >= "
                                         f"{len(prompts)}; this one has "
                                         f"{lib.quill_context_n_seq(handle)}")
                self._clear(handle, len(prompts))
                batch = _Batch(handle, self.model, samplers, stops, ignore_eos, max_tokens)
                return batch.run(prompt_ids)
        finally:
            for s in samplers:
                s.close()


class _Batch:
    """generate_batch's loop: the prompts in one batch, then each step the tokens of the
    sequences still going in one batch, each sampled from its own row of logits."""

    def __init__(self, handle: int, model: Model, samplers: list[Sampler], stops: list[bytes],
                 ignore_eos: bool, max_tokens: int):
        self.handle, self.model, self.samplers = handle, model, samplers
        self.stops, self.ignore_eos, self.max_tokens = stops, ignore_eos, max_tokens
        self.n_ctx = lib.quill_context_n_ctx(handle)

    def run(self, prompt_ids: list[list[int]]) -> list[Completion]:
        n = len(prompt_ids)
        texts = [b""] * n
        counts = [0] * n
        finish: list[str | None] = [None] * n
        for i, ids in enumerate(prompt_ids):
            if not 0 < len(ids) < self.n_ctx:
                raise ParameterError(f"prompt {i} has {len(ids)} tokens; the context holds "
                                     f"{self.n_ctx}, so between 1 and {self.n_ctx - 1} fit")
            for t in ids:
                _lib.check(lib.quill_sampler_accept(self.samplers[i].handle, t, True))
        if self.max_tokens == 0:
            finish = ["length"] * n
        # (sequence, its tokens to decode, the position of the first), logits after the last
        rows = [(i, ids, 0) for i, ids in enumerate(prompt_ids) if finish[i] is None]
        batch = lib.quill_batch_new(max(sum(len(ids) for ids in prompt_ids), n))
        try:
            while rows:
                lib.quill_batch_clear(ctypes.byref(batch))
                logit_rows = {}
                for i, ids, first in rows:
                    for j, t in enumerate(ids):
                        want = j == len(ids) - 1
                        if want:
                            logit_rows[i] = batch.n_tokens
                        _lib.check(lib.quill_batch_add(ctypes.byref(batch), t, first + j, i, want))
                _lib.check(lib.quill_decode(self.handle, ctypes.byref(batch)))
                rows = []
                for i, row in logit_rows.items():
                    token = self._next(i, row)
                    done = self._take(i, token, texts, counts)
                    if done:
                        finish[i] = done
                    else:
                        rows.append((i, [token], lib.quill_seq_length(self.handle, i)))
        finally:
            lib.quill_batch_free(ctypes.byref(batch))
        return [Completion(texts[i].decode("utf-8", "replace"), finish[i], counts[i],
                           self.samplers[i].seed) for i in range(n)]

    def _next(self, i: int, row: int) -> int:
        logits = lib.quill_logits(self.handle, row)
        if not logits:
            raise _lib.last_error()
        token = lib.quill_sampler_sample(self.samplers[i].handle, logits)
        _lib.check(token)
        _lib.check(lib.quill_sampler_accept(self.samplers[i].handle, token, False))
        return token

    def _take(self, i: int, token: int, texts: list[bytes], counts: list[int]) -> str | None:
        """Adds sequence i's token to its text; the finish reason when it ends the text."""
        if lib.quill_token_is_end(self.model.handle, token) and not self.ignore_eos:
            return "eos"
        counts[i] += 1
        if not lib.quill_token_is_control(self.model.handle, token):
            before = len(texts[i])
            texts[i] += self.model.token_to_piece(token)
            longest = max((len(s) for s in self.stops), default=0)
            start = max(0, before - longest + 1)  # a stop may begin in the text before
            cuts = [k for k in (texts[i].find(s, start) for s in self.stops) if k >= 0]
            if cuts:
                texts[i] = texts[i][:min(cuts)]
                return "stop"
        if counts[i] >= self.max_tokens:
            return "length"
        if lib.quill_seq_length(self.handle, i) >= self.n_ctx:
            return "context"
        return None

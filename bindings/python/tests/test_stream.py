"""Context.stream: its pieces are generate's text, and leaving the loop cancels it."""
from __future__ import annotations

import threading

import pytest

import quill


def stream_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "quill-stream"]


@pytest.mark.parametrize("kwargs", [dict(temperature=0), dict(seed=42),
                                    dict(temperature=0, stop=["park"])])
def test_a_stream_is_generates_text(ctx, kwargs):
    done = ctx.generate("Once upon a time", 100, **kwargs)
    s = ctx.stream("Once upon a time", 100, **kwargs)
    pieces = list(s)
    assert len(pieces) > 1
    assert "".join(pieces) == done.text
    assert (s.finish_reason, s.n_tokens) == (done.finish_reason, done.n_tokens)


def test_break_cancels_the_generation_and_ends_its_thread(ctx):
    n = 120
    for piece in ctx.stream("Once upon a time", n, ignore_eos=True, temperature=0):
        break
    assert stream_threads() == []  # the dropped stream was closed, its thread joined
    # the context is free again, and its cache holds fewer tokens than the whole run
    assert ctx.perf.n_generated < n


def test_close_cancels_and_says_so(ctx):
    s = ctx.stream("Once upon a time", 120, ignore_eos=True, temperature=0)
    first = next(s)
    s.close()
    assert s.finish_reason == "cancelled"
    assert 1 <= s.n_tokens < 120
    assert list(s) == []
    assert stream_threads() == []
    full = ctx.generate("Once upon a time", 120, ignore_eos=True, temperature=0)
    assert full.text.startswith(first) and full.n_tokens == 120


def test_a_stream_in_a_with_block_is_closed_at_its_end(ctx):
    with ctx.stream("Once upon a time", 120, ignore_eos=True) as s:
        next(s)
    assert s.finish_reason == "cancelled"
    assert stream_threads() == []


def test_a_second_call_while_a_stream_runs_is_a_context_error(ctx):
    s = ctx.stream("Once upon a time", 120, ignore_eos=True)
    next(s)
    with pytest.raises(quill.ContextError, match="busy"):
        ctx.generate("Once")
    s.close()
    assert ctx.generate("Once", 3).n_tokens == 3


def test_closing_the_context_cancels_its_stream(model):
    ctx = quill.Context(model)
    s = ctx.stream("Once upon a time", 120, ignore_eos=True)
    next(s)
    ctx.close()
    assert s.finish_reason == "cancelled"
    assert stream_threads() == []


def test_an_error_in_the_generation_is_raised_by_the_loop(model):
    with quill.Context(model, n_ctx=8) as ctx:
        with pytest.raises(quill.ContextError, match="context holds 8"):
            list(ctx.stream("Once upon a time there was a little girl named Lily"))
        assert ctx.generate("Once", 2).n_tokens == 2  # released after the error


def test_closing_a_stream_that_had_ended_keeps_its_finish(ctx):
    s = ctx.stream("Once upon a time", 3, temperature=0)
    s._thread.join()  # the generation has ended; its pieces wait in the queue, unread
    s.close()
    assert (s.finish_reason, s.n_tokens) == ("length", 3)


def test_an_unread_stream_whose_queue_is_full_closes(ctx):
    s = ctx.stream("Once upon a time", 120, ignore_eos=True, temperature=0)
    while s._queue.qsize() < quill.Stream.AHEAD:  # the generator waits for room
        s._thread.join(timeout=0.01)
    s.close()
    assert s.finish_reason == "cancelled" and s.n_tokens <= quill.Stream.AHEAD + 1
    assert stream_threads() == []

"""Threads: the GIL is let go while C decodes, and contexts on one model run side by side."""
from __future__ import annotations

import sys
import threading
import time

import quill

PROMPTS = ["Once upon a time", "The little dog", "Tom had a red ball", "Lily and Ben"]


def test_another_python_thread_runs_during_a_generation(ctx):
    """With the switch interval at 100 s, the interpreter never takes the GIL away from the
    main thread: the counting thread can run only while the main thread lets the GIL go
    itself, that is inside the C calls (ctypes.CDLL). With the GIL held through them
    (ctypes.PyDLL) it counts nothing."""
    count = 0
    started, stop = threading.Event(), threading.Event()

    def counter() -> None:
        nonlocal count
        started.set()
        while not stop.is_set():
            count += 1
            time.sleep(0.0001)  # lets the GIL go, then waits to take it back

    interval = sys.getswitchinterval()
    sys.setswitchinterval(100)
    try:
        t = threading.Thread(target=counter)
        t.start()
        started.wait()
        before = count
        for prompt in PROMPTS * 3:
            ctx.generate(prompt, 120, ignore_eos=True, temperature=0)
        during = count - before
        stop.set()
        t.join()
    finally:
        sys.setswitchinterval(interval)
    assert during > 0


def test_two_contexts_on_one_model_from_two_threads(model):
    with quill.Context(model) as c:
        want = {p: c.generate(p, 100, temperature=0).text for p in PROMPTS}
    got: dict[int, list[str]] = {}
    barrier = threading.Barrier(2)

    def run(k: int) -> None:
        with quill.Context(model) as c:
            barrier.wait()
            got[k] = [c.generate(p, 100, temperature=0).text for p in PROMPTS * 5]

    threads = [threading.Thread(target=run, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got[0] == got[1] == [want[p] for p in PROMPTS * 5]

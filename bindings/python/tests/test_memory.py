"""Objects let their C memory go: 1,000 load/free cycles do not grow the resident set."""
from __future__ import annotations

import gc

import quill


def resident_kb() -> int:
    """VmRSS, the process's resident memory in kB (Linux's /proc/self/status)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc/self/status")


def cycle(path: str, k: int) -> None:
    """One load, a context, a token, and the frees: by `with` on even k, by the garbage
    collector (the last reference dropped) on odd k."""
    if k % 2 == 0:
        with quill.Model.load(path) as m, quill.Context(m, n_ctx=32) as c:
            assert c.generate("Once", 1, temperature=0).n_tokens == 1
    else:
        m = quill.Model.load(path)
        c = quill.Context(m, n_ctx=32)
        assert c.generate("Once", 1, temperature=0).n_tokens == 1
        del c, m


def test_a_thousand_loads_do_not_grow_resident_memory(model_path):
    for k in range(100):  # warm-up: the allocator's arenas, the library's first-use state
        cycle(model_path, k)
    gc.collect()
    before = resident_kb()
    n = 0
    for k in range(1000):
        cycle(model_path, k)
        n += 1
    gc.collect()
    grown = resident_kb() - before
    assert n == 1000
    # a leak of the model (~1.2 MB of F32 weights read in) or its 32-position cache per cycle
    # would be hundreds of MB; 2 MB allows the allocator's own bookkeeping
    assert grown < 2048, f"resident memory grew by {grown} kB over {n} cycles"

#!/usr/bin/env python3
"""The per-token cost of streaming through Python: tokens/s of Context.stream beside a C
program (bench_stream.c, compiled here against the checkout's include/ and lib/) that
streams the same greedy tokens through the same library's quill_generate.

Both measure from the first piece of text to the last, as a reader of the stream sees them
(the Python side on its reading thread, after the queue), on a model loaded with the same
threads; the runs alternate, C then Python, so that a machine's drift hits both; the
medians are compared. Run from anywhere:

    python3 bindings/python/bench_stream.py MODEL --threads 2 --tokens 128 --runs 5
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
import quill  # noqa: E402 (from this folder, not an installed copy)

PROMPT = "Once upon a time"


def build_c(out: Path) -> Path:
    exe = out / "bench_stream"
    subprocess.run(["cc", "-std=c11", "-D_POSIX_C_SOURCE=200809L", "-O2", "-Wall", "-Wextra",
                    "-I", str(REPO / "include"), str(HERE / "bench_stream.c"),
                    "-L", str(REPO / "lib"), f"-Wl,-rpath,{REPO / 'lib'}", "-lquill", "-lm",
                    "-o", str(exe)], check=True)
    return exe


def c_run(exe: Path, model: str, threads: int, tokens: int) -> float:
    out = subprocess.run([str(exe), model, str(threads), str(tokens), "1", PROMPT],
                         capture_output=True, text=True, check=True).stdout
    return float(out.split()[0])


def python_run(ctx: quill.Context, tokens: int) -> float:
    times = [time.perf_counter() for _ in ctx.stream(PROMPT, tokens, ignore_eos=True,
                                                         temperature=0)]
    return (len(times) - 1) / (times[-1] - times[0])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        exe = build_c(Path(tmp))
        c_rates, py_rates = [], []
        with quill.Model.load(args.model, threads=args.threads) as model, \
                quill.Context(model) as ctx:
            print(model.description)
            python_run(ctx, 8)  # warm-up: the weights' pages and the threads
            for r in range(args.runs):
                c_rates.append(c_run(exe, args.model, args.threads, args.tokens))
                py_rates.append(python_run(ctx, args.tokens))
                print(f"run {r + 1}: C {c_rates[-1]:.2f} tokens/s, "
                      f"Python stream {py_rates[-1]:.2f} tokens/s", flush=True)
    c_med, py_med = statistics.median(c_rates), statistics.median(py_rates)
    print(f"median of {args.runs} runs, {args.tokens} tokens, {args.threads} threads: "
          f"C {c_med:.2f} tokens/s, Python stream {py_med:.2f} tokens/s = "
          f"{100 * py_med / c_med:.1f}% of C")
    return 0


if __name__ == "__main__":
    sys.exit(main())

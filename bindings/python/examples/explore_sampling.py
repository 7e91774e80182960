#!/usr/bin/env python3
"""What the sampler does to the model's guesses, stage by stage.

Loads a model (by default the one `make demo` trains: runs/demo/model.gguf), streams a
completion of the prompt, then takes the next step apart with Context.explain_step: the
most likely candidates left after each stage of the chain (the logit bias, the penalties,
top-k, typical-p, top-p, min-p, the temperature), drawn as one bar chart per stage into a
PNG with matplotlib. Run from the checkout's root:

    make demo
    python3 bindings/python/examples/explore_sampling.py
    python3 bindings/python/examples/explore_sampling.py ../shared/models/stories260K.gguf \\
        --prompt "The little dog" --top-k 10 --out stages.png

Things to try: --temperature 2 flattens each stage's bars (the probabilities are the
softmax of the survivors' logits / temperature); --top-p 0.5 cuts the list short; --top-k 0
turns top-k off, so that its stage keeps the whole vocabulary.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # draws into files; no display needed
import matplotlib.pyplot as plt  # noqa: E402 (after choosing the backend)

try:
    import quill
except ImportError:  # run from the checkout without installing: the package is one folder up
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import quill


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", nargs="?", default="runs/demo/model.gguf",
                    help="a GGUF model (default: runs/demo/model.gguf, from make demo)")
    ap.add_argument("--prompt", default="Once upon a time")
    ap.add_argument("--max-tokens", type=int, default=40, help="tokens to stream first")
    ap.add_argument("--temperature", type=float, default=0.9)
    ap.add_argument("--top-k", type=int, default=12)
    ap.add_argument("--top-p", type=float, default=0.9)
    ap.add_argument("--min-p", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", default="sampling_stages.png", help="the PNG to write")
    return ap.parse_args(argv)


def plot_stages(step: quill.Step, title: str, out: str) -> None:
    """One horizontal bar chart per stage: its most likely survivors and their
    probabilities, the token drawn in another colour."""
    n = len(step.stages)
    cols = 3
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.6 * rows), squeeze=False)
    for ax, stage in zip(axes.flat, step.stages):
        labels = [repr(c.piece) for c in stage.candidates]
        colours = ["tab:orange" if c.token == step.token else "tab:blue"
                   for c in stage.candidates]
        ax.barh(labels[::-1], [c.p for c in stage.candidates][::-1], color=colours[::-1])
        ax.set_xlim(0, 1)
        ax.set_title(f"{stage.name}: {stage.n_survivors} left", fontsize=10)
        ax.tick_params(labelsize=8)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sampling = dict(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                    min_p=args.min_p, seed=args.seed)
    with quill.Model.load(args.model) as model, quill.Context(model) as ctx:
        print(model.description)
        print(args.prompt, end="", flush=True)
        text = ""
        for piece in ctx.stream(args.prompt, args.max_tokens, **sampling):
            print(piece, end="", flush=True)
            text += piece
        print()
        step = ctx.explain_step(args.prompt + text, **sampling)
    print(f"next token: {step.piece!r}")
    for stage in step.stages:
        best = ", ".join(f"{c.piece!r} {c.p:.2f}" for c in stage.candidates[:4])
        print(f"  {stage.name:<12} {stage.n_survivors:>6} left: {best}")
    plot_stages(step, f"the next token after ...{(args.prompt + text)[-40:]!r}", args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

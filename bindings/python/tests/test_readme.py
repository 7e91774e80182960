"""Every ```python block of bindings/python/README.md runs, in order, in one namespace (as
the README says), from a folder where model.gguf is stories260K; and the example script
writes its PNG."""
from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]


def python_blocks(markdown: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", markdown, flags=re.M | re.S)


def test_every_readme_example_runs(model_path, tmp_path, monkeypatch):
    blocks = python_blocks((HERE / "README.md").read_text())
    (tmp_path / "model.gguf").symlink_to(model_path)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "readme"}
    out = io.StringIO()
    ran = 0
    for i, block in enumerate(blocks):
        with contextlib.redirect_stdout(out):
            exec(compile(block, f"README.md python block {i + 1}", "exec"), namespace)
        ran += 1
    assert ran == len(blocks) == 10
    printed = out.getvalue()
    # the blocks' own claims, checked: the errors of the last block were raised and caught
    assert "FileError: missing.gguf" in printed and "ParameterError: temperature" in printed
    assert "ContextError: the context is closed" in printed


def test_the_readme_blocks_are_found():
    assert python_blocks("x\n```python\na = 1\n```\n```sh\nb\n```\n") == ["a = 1\n"]


def test_explore_sampling_writes_its_png(model_path, tmp_path):
    png = tmp_path / "stages.png"
    done = subprocess.run([sys.executable, str(HERE / "examples" / "explore_sampling.py"),
                           model_path, "--max-tokens", "20", "--out", str(png)],
                          capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, MPLBACKEND="Agg"))
    assert done.returncode == 0, done.stderr
    assert png.exists() and png.stat().st_size > 10_000
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "chain" in done.stdout and f"wrote {png}" in done.stdout

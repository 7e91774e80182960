"""What the tests share: the model they run on (stories260K from ../shared, as the C tests
find it), the `quill` binary they compare with, and one model and context per test.

A missing ../shared model or binary skips the tests that need it, and fails them under
CI=true (the C tests' rule: CI must not pass by skipping)."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

import quill

REPO = Path(__file__).resolve().parents[3]


def _required(path: Path, what: str) -> Path:
    if not path.exists():
        message = f"{what} {path} is missing"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message} (CI=true: a missing input fails)")
        pytest.skip(message)
    return path


def shared(relative: str) -> Path:
    """A file of ../shared (QUILL_SHARED overrides the folder)."""
    root = os.environ.get("QUILL_SHARED") or str(REPO.parent / "shared")
    return _required(Path(root) / relative, "the shared file")


@pytest.fixture(scope="session")
def model_path() -> str:
    return str(shared("models/stories260K.gguf"))


@pytest.fixture(scope="session")
def quill_bin() -> str:
    """The command-line program built from the same checkout (QUILL_BIN overrides it)."""
    return str(_required(Path(os.environ.get("QUILL_BIN") or REPO / "bin" / "quill"),
                         "the quill binary"))


@pytest.fixture
def model(model_path):
    with quill.Model.load(model_path) as m:
        yield m


@pytest.fixture
def ctx(model):
    with quill.Context(model) as c:
        yield c


@pytest.fixture
def cli(quill_bin, model_path):
    """Runs `quill generate MODEL ARGS...` and returns its stdout's bytes."""
    def run(*args: str) -> bytes:
        done = subprocess.run([quill_bin, "generate", model_path, *args], capture_output=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr.decode()
        return done.stdout
    return run

"""`pip install --no-build-isolation` with no package index, and each place the installed
package finds libquill.so: QUILL_LIBRARY, a copy next to the package, the loader's path."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

LIB = REPO / "lib" / "libquill.so.0"


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The package as pip installs it, into a folder of its own (--target), offline."""
    if subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True).returncode:
        if os.environ.get("CI") == "true":
            pytest.fail("python3 -m pip is missing (make deps installs python3-pip)")
        pytest.skip("python3 -m pip is missing")
    target = tmp_path_factory.mktemp("site")
    work = tmp_path_factory.mktemp("src")
    source = shutil.copytree(REPO / "bindings" / "python", work / "python",
                             ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--no-build-isolation",
                           "--no-index", "--no-deps", "--quiet", "--target", str(target),
                           str(source)], capture_output=True, text=True,
                          env=dict(os.environ, PIP_NO_CACHE_DIR="1"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert (target / "quill" / "__init__.py").exists() and (target / "quill" / "py.typed").exists()
    return target


def run_installed(site: Path, env: dict[str, str], model_path: str) -> str:
    """Greedy text from the installed package, run from a folder outside the checkout."""
    code = ("import quill, sys; m = quill.Model.load(sys.argv[1]); "
            "print(quill.Context(m).generate('Once upon a time', 10, temperature=0).text)")
    clean = {k: v for k, v in os.environ.items() if k not in ("QUILL_LIBRARY", "PYTHONPATH",
                                                               "LD_LIBRARY_PATH")}
    done = subprocess.run([sys.executable, "-c", code, model_path], cwd=site.parent,
                          env=dict(clean, PYTHONPATH=str(site), **env), capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("where", ["QUILL_LIBRARY", "next to the package", "LD_LIBRARY_PATH"])
def test_the_installed_package_finds_the_library(installed, model_path, cli, where, tmp_path):
    site = installed
    if where == "next to the package":
        site = Path(shutil.copytree(installed, tmp_path / "site"))
        shutil.copy(LIB, site / "quill" / LIB.name)
    env = {"QUILL_LIBRARY": str(LIB)} if where == "QUILL_LIBRARY" else \
          {"LD_LIBRARY_PATH": str(LIB.parent)} if where == "LD_LIBRARY_PATH" else {}
    want = cli("--prompt", "Once upon a time", "--no-echo", "--temperature", "0", "-n", "10")
    assert run_installed(site, env, model_path) == want.decode() + "\n"

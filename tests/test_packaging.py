"""The sdist and the wheel: what each holds, and the wheel installed and run outside the checkout.

The module builds an sdist from a copy of the source tree (so the checkout gets no build
litter), then the wheel from that sdist, as pip would. The wheel is installed with pip into a
fresh virtual environment in a temporary folder; that environment reaches the current one's
dependencies (torch, transformers, the embedded tokenizer) through a path line in a ``.pth``
file, which adds the folder to ``sys.path`` without running the current environment's editable
install hook, so ``import regexlm`` there can only find the installed copy. Nothing is
downloaded: no build isolation, ``--no-index``, ``--no-deps``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

import regexlm

ROOT = Path(__file__).resolve().parents[1]
CSRC_NAMES = sorted(p.name for p in (ROOT / "csrc").iterdir() if p.suffix in {".cu", ".cpp", ".h"})
BUILD_ENV = {**os.environ, "REGEXLM_NO_CUDA_EXT": "1"}  # the AOT extension build is not tested here
BUILD_ENV.pop("PYTHONPATH", None)


def _files(top: Path) -> list[str]:
    """Files under ``top`` relative to ROOT, without caches, bytecode and build outputs."""
    found = (p.relative_to(ROOT) for p in top.rglob("*") if p.is_file())
    return sorted(
        str(p)
        for p in found
        if not any(part.startswith(".") or part == "__pycache__" for part in p.parts)
        and p.suffix not in {".pyc", ".so", ".o"}
    )


def _build(hook: str, source: Path, out: Path) -> Path:
    """Run a PEP 517 hook of setuptools in ``source`` (a subprocess, as a build frontend does)."""
    code = f"import setuptools.build_meta as b; print(b.{hook}({str(out)!r}))"
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=source,
        env=BUILD_ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out / proc.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def dists(tmp_path_factory) -> tuple[Path, Path]:
    """(sdist, wheel): the sdist built from a copy of the tree, the wheel from the sdist."""
    tmp = tmp_path_factory.mktemp("packaging")
    tree = tmp / "tree"
    shutil.copytree(
        ROOT,
        tree,
        ignore=shutil.ignore_patterns(
            ".*", "__pycache__", "*.pyc", "*.so", "*.egg-info", "build", "dist"
        ),
    )
    sdist = _build("build_sdist", tree, tmp / "dist")
    with tarfile.open(sdist) as archive:
        archive.extractall(tmp / "unpacked", filter="data")
    (unpacked,) = (tmp / "unpacked").iterdir()
    wheel = _build("build_wheel", unpacked, tmp / "dist")
    return sdist, wheel


def test_sdist_holds_what_building_and_testing_need(dists):
    sdist, _ = dists
    with tarfile.open(sdist) as archive:
        top, *_ = archive.getnames()[0].split("/")
        names = {name.removeprefix(top + "/") for name in archive.getnames()}
    needed = {"LICENSE", "README.md", "pyproject.toml", "setup.py", "MANIFEST.in", "Makefile"}
    for folder in ("regexlm", "csrc", "tests", "bench"):
        needed.update(_files(ROOT / folder))
    assert sorted(needed - names) == []
    assert not any(n.endswith(".pyc") or "__pycache__" in n for n in names)


def test_wheel_holds_the_package_and_the_cuda_sources(dists):
    _, wheel = dists
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        info = f"regexlm-{regexlm.__version__}.dist-info"
        metadata = archive.read(f"{info}/METADATA").decode()
        entry_points = archive.read(f"{info}/entry_points.txt").decode()
    assert wheel.name == f"regexlm-{regexlm.__version__}-py3-none-any.whl"
    python_files = [n for n in _files(ROOT / "regexlm") if n.endswith((".py", ".typed", ".c"))]
    assert sorted(set(python_files) - names) == []
    assert {f"regexlm/csrc/{name}" for name in CSRC_NAMES} <= names
    assert not any(n.startswith(("tests/", "bench/", "csrc/")) for n in names)
    assert re.search(rf"^Version: {re.escape(regexlm.__version__)}$", metadata, re.M)
    assert re.search(r"^Requires-Dist: prometheus[_-]client", metadata, re.M)
    assert f"{info}/licenses/LICENSE" in names
    assert re.search(r"^regexlm = regexlm\.cli:main$", entry_points, re.M)


# Runs in the fresh environment, from a folder outside the checkout.
RUN_INSTALLED = r"""
import importlib.metadata, json, re, sys
from pathlib import Path

import regexlm
from regexlm.generation import GenerationRequest, Generator
from regexlm.models import build_tiny_llama, load_tokenizer
from regexlm import native
from regexlm.index import native_walk
from regexlm.ops import sample_cuda

tokenizer = load_tokenizer()
model = build_tiny_llama(tokenizer, seed=0)
generator = Generator(model, tokenizer, device="cpu")
pattern = r"\d{3}-[a-z]{2}"
(out,) = generator.generate_batch([GenerationRequest("Code: ", pattern, max_new_tokens=12, seed=3)])
print(json.dumps({
    "file": regexlm.__file__,
    "version": regexlm.__version__,
    "metadata_version": importlib.metadata.version("regexlm"),
    "csrc": str(sample_cuda.CSRC),
    "jit_sources": sample_cuda.jit_sources(),
    "native_sources": [str(p) for p in native.SOURCES],
    "c_walk_built": native_walk.library() is not None,
    "importable_from": [p for p in sys.path if (Path(p or ".") / "regexlm" / "__init__.py").exists()],
    "pattern": pattern,
    "completion": out.completion,
    "stop_reason": out.stop_reason,
}))
"""


def _venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def test_wheel_installed_in_a_fresh_environment_generates(dists, tmp_path):
    _, wheel = dists
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = _venv_python(venv)
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps"]
        + ["--no-index", "--no-compile", "--disable-pip-version-check", "-q", str(wheel)],
        check=True,
        env=BUILD_ENV,
        timeout=300,
    )
    # Only now (pip never saw it) lend the current environment's packages to the new one.
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    lent = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
    (Path(site) / "_regexlm_test_lent_packages.pth").write_text("\n".join(sorted(lent)) + "\n")

    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    env = {**BUILD_ENV, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run(
        [str(python), "-c", RUN_INSTALLED],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])

    installed = Path(site) / "regexlm"
    assert Path(result["file"]).parent == installed  # not the checkout
    assert result["importable_from"] == [site]
    assert result["version"] == result["metadata_version"] == regexlm.__version__
    assert Path(result["csrc"]) == installed / "csrc"
    assert sorted(Path(p).name for p in result["jit_sources"]) == [
        n for n in CSRC_NAMES if not n.endswith(".h")
    ]
    assert all(Path(p).parent == installed / "csrc" for p in result["jit_sources"])
    assert [Path(p) for p in result["native_sources"]] == [
        installed / "index" / "trie_walk.c",
        installed / "index" / "class_trie.c",
        installed / "index" / "token_classes.c",
        installed / "automata" / "lazy_dfa.c",
    ]
    assert result["c_walk_built"]
    assert re.fullmatch(result["pattern"], result["completion"]), result
    assert result["stop_reason"] == "pattern_match"

    script = venv / ("Scripts/regexlm.exe" if os.name == "nt" else "bin/regexlm")
    help_run = subprocess.run(
        [str(script), "--help"], cwd=workdir, env=env, capture_output=True, text=True, timeout=120
    )
    assert help_run.returncode == 0, help_run.stderr
    assert all(command in help_run.stdout for command in ("serve", "generate", "bench"))
    version_run = subprocess.run(
        [str(script), "--version"], cwd=workdir, env=env, capture_output=True, text=True
    )
    assert version_run.stdout.strip() == f"regexlm {regexlm.__version__}"

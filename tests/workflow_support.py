"""Shared helpers of the workflow tests: a fresh project folder, commands, comparisons."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
PROJECT_FILES = ["Snakefile", "workflow", "config", "envs", "Makefile", ".gitignore"]

# The tail of a config that runs the manifold alone: the image pipelines have their own tests
# (test_images_workflow.py), the studies too (test_workflow.py)
MANIFOLD_ONLY = """
  digits_mask: {enabled: false}
  mri: {enabled: false}
studies:
  heuristics: {enabled: false}
  heuristics_paper: {enabled: false}
  posterior_benchmark: {enabled: false}
"""
TWO_ITERATIONS = (
    """
experiments:
  manifold:  # the demo's pipeline with smaller sizes (CI time)
    em: {iterations: 2}
    estep: {steps: 32}
    mstep: {steps: 600, resume_every_s: 0.5}
    evaluate: {n_samples: 256, steps: 32, figure_iterations: [0, 1, 2]}"""
    + MANIFOLD_ONLY
)


def run(cmd, cwd, check=True, **kw):
    proc = subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def snakemake(*args):
    return [str(BIN / "snakemake"), *args]


def make_project(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_FILES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, path / name, symlinks=True)
        else:
            shutil.copy(src, path / name)
    (path / "two.yaml").write_text(TWO_ITERATIONS)
    run(["git", "init", "-q"], path)
    run([str(BIN / "dvc"), "init", "-q"], path)
    shutil.copy(REPO / ".dvcignore", path / ".dvcignore")
    run(["make", "profiles"], path)
    return path


DEMO = ["--profile", "local", "--configfile", "config/demo.yaml", "two.yaml"]


def payload(path):
    """A checkpoint's content without its provenance (host and wall-clock times, by design)."""
    state = torch.load(path, weights_only=True)
    state.pop("provenance")
    return state


def same(a, b):
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    return a == b

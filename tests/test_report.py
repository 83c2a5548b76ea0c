"""`snakemake --report` on a finished small run: one HTML file with every figure, the per-lap
tables, the claims and the lineage, opened in a real headless Chromium (rendered DOM, no
console errors, a screenshot that is not blank)."""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image
from workflow_support import DEMO, make_project, run, snakemake

EXPECTED = [
    "sinkhorn.png",
    "marginals.png",
    "diagnostics.png",
    "sinkhorn.csv",
    "diagnostics.csv",
    "claims.md",
    "lineage.txt",
]


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    project = make_project(tmp_path_factory.mktemp("report"))
    (project / "one.yaml").write_text("experiments:\n  manifold:\n    em: {iterations: 1}\n")
    run(snakemake(*DEMO, "one.yaml", "--cores", "2"), project)
    proc = run(snakemake(*DEMO, "one.yaml", "--report", "report.html"), project)
    return project, proc.stdout + proc.stderr


def test_report_holds_every_figure_table_and_the_lineage(report):
    project, log = report
    html = (project / "report.html").read_text()
    for name in EXPECTED:
        assert f"Adding {name}" in log, (name, log[-2000:])
        assert name in html, name
    assert "label-free diagnostics" in html and "lineage of the final prior" in html  # captions
    # the figures are embedded (base64 PNG): each one decodes to a real image
    blobs = re.findall(r"iVBORw0KGgo[A-Za-z0-9+/=]+", html)
    assert len(blobs) == 3, len(blobs)  # sinkhorn, marginals, diagnostics
    for blob in blobs:
        image = Image.open(io.BytesIO(base64.b64decode(blob)))
        assert image.size[0] > 300 and image.size[1] > 200, image.size


def test_report_renders_in_headless_chromium(report, tmp_path):
    browser = _chromium()
    if browser is None:
        if os.environ.get("EMPRIORS_REQUIRE_CHROMIUM"):
            pytest.fail("EMPRIORS_REQUIRE_CHROMIUM is set but chromium is not installed")
        pytest.skip("chromium is not installed (CI installs it: .ci/run)")
    project, _ = report
    url = (project / "report.html").as_uri()
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000"]
    logs = ["--enable-logging=stderr", "--v=0"]
    dom = subprocess.run(
        [*flags, *logs, "--dump-dom", url], capture_output=True, text=True, timeout=180
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "manifold" in dom.stdout  # the category the app rendered from the embedded data
    console = [line for line in dom.stderr.splitlines() if "CONSOLE" in line]
    errors = [line for line in console if "Uncaught" in line or "Error" in line]
    assert not errors, errors
    shot = tmp_path / "report.png"
    subprocess.run(
        [*flags, "--window-size=1280,1600", f"--screenshot={shot}", url],
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.std() > 5, "the screenshot is blank"

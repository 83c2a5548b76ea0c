"""The GPU benchmark's --smoke mode (CPU, tiny U-Net) runs every row, so the script that
makes the README's GPU table cannot rot between the sessions that have a GPU."""

from __future__ import annotations

import re
import subprocess
import sys

from workflow_support import ENV, REPO


def test_gpu_benchmark_smoke_prints_every_row_and_the_projection():
    proc = subprocess.run(
        [sys.executable, str(REPO / "tests" / "benchmarks" / "gpu.py"), "--smoke"],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "SMOKE (not a GPU figure)" in out
    rows = re.findall(
        r"^\| (E-step MMPS call|M-step Adam step|Evaluate DDIM call) \| ([^|]+) \| "
        r"([\d,.]+) \|",
        out,
        re.M,
    )
    variants = {(stage, variant.strip()) for stage, variant, _ in rows}
    for v in (
        "ours fp32",
        "ours tf32",
        "ours bf16",
        "ours bf16 + compile",
        "azula fp32",
        "azula bf16",
    ):
        assert ("E-step MMPS call", v) in variants
    for v in ("fp32", "tf32", "bf16", "bf16 + compile"):
        assert ("M-step Adam step", v) in variants
    assert ("Evaluate DDIM call", "bf16 + compile") in variants
    assert all(float(rate.replace(",", "")) > 0 for _, _, rate in rows)
    lap = re.search(r"; lap ([\d,.]+), 32 laps ([\d,.]+)", out)
    assert lap and float(lap.group(1).replace(",", "")) > 0
    assert "| E-step >= 2x azula's MMPS calls/s |" in out

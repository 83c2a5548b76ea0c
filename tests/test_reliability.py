"""The random-kill campaign (tests/reliability/kill_campaign.py) in CI: 3 kills, in the M-step,
an E-step shard and a DVC snapshot (the README reports a run of every stage), each followed
by a plain rerun that must reach the uninterrupted run's content, with no temp file left,
`dvc status` clean and nothing left to do."""

from __future__ import annotations

import subprocess
import sys

import pytest
from workflow_support import ENV, REPO

pytestmark = pytest.mark.workflow


def test_three_random_kills_each_rerun_to_the_same_content(tmp_path):
    script = REPO / "tests" / "reliability" / "kill_campaign.py"
    command = [sys.executable, str(script), "--kills", "3", "--seed", "1"]
    command += ["--stages", "mstep,estep,snapshot"]
    command += ["--workdir", str(tmp_path), "--report", str(tmp_path / "kills.md")]
    proc = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    table = (tmp_path / "kills.md").read_text()
    assert "identical: 3 / 3" in table, table

"""``python -m empriors diff``: two runs' results compared by content (src/empriors/rundiff.py):
equal where only provenance times, hosts, attempts, timing columns and DVC hashes differ, and
different for any other change."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import torch

from empriors.data.io import provenance, save_checkpoint, write_h5
from empriors.rundiff import run_differences


def _run(folder, started: str, x: torch.Tensor, wall_s: float = 1.0):
    prov = {**provenance("test", {"steps": 3}, [], 0, started), "host": f"host-{started}"}
    write_h5(folder / "samples.h5", {"x": x}, prov, {"iteration": 1})
    save_checkpoint(folder / "iter_1" / "prior.pt", {"w": x * 2, "losses": [0.5]}, prov)
    (folder / "eval.json").write_text(json.dumps({"sinkhorn": 0.25, "provenance": prov}))
    (folder / "cost.csv").write_text(f"iteration,sinkhorn,wall_s\n1,0.25,{wall_s}\n")
    (folder / "iter_1.dvc").write_text(
        f"outs:\n- md5: {started}.dir\n  size: {len(started)}\n  nfiles: 1\n  path: iter_1\n"
    )
    (folder / "logs").mkdir(exist_ok=True)
    (folder / "logs" / "estep.log").write_text(f"started {started}\n")


def test_runs_differing_only_in_history_have_the_same_content(tmp_path):
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    _run(tmp_path / "a", "2026-01-01T00:00:00", x)
    _run(tmp_path / "b", "2026-02-02T11:11:11.5", x.clone(), wall_s=9.0)
    assert run_differences(tmp_path / "a", tmp_path / "b") == []
    cli = [sys.executable, "-m", "empriors", "diff", str(tmp_path / "a"), str(tmp_path / "b")]
    proc = subprocess.run(cli, capture_output=True, text=True)
    assert proc.returncode == 0 and "same content" in proc.stdout, proc.stderr

    # any change of content is found, named by file
    shutil.copytree(tmp_path / "b", tmp_path / "c")
    y = x.clone()
    y[2, 1] = torch.nextafter(y[2, 1], torch.tensor(1e9))  # one ulp
    write_h5(tmp_path / "c" / "samples.h5", {"x": y}, provenance("test", {}, [], 0, "t"), {})
    (tmp_path / "c" / "cost.csv").write_text("iteration,sinkhorn,wall_s\n1,0.26,1.0\n")
    (tmp_path / "c" / "extra.txt").write_text("new")
    found = run_differences(tmp_path / "a", tmp_path / "c")
    assert "extra.txt: only in" in found[0]
    text = "\n".join(found)
    assert "samples.h5[dataset x]" in text  # the one-ulp change
    assert "samples.h5: keys ['attr /:iteration'] in one run only" in text  # an attribute
    assert "samples.h5[provenance]" in text  # another config
    assert "cost.csv[0][sinkhorn]" in text
    proc = subprocess.run([*cli[:-1], str(tmp_path / "c")], capture_output=True, text=True)
    assert proc.returncode == 1 and "difference(s) in content" in proc.stderr


def test_a_changed_tensor_in_a_checkpoint_and_a_missing_folder(tmp_path):
    x = torch.ones(2, 2)
    _run(tmp_path / "a", "t0", x)
    _run(tmp_path / "b", "t1", x)
    save_checkpoint(tmp_path / "b" / "iter_1" / "prior.pt", {"w": x * 3, "losses": [0.5]}, {})
    found = run_differences(tmp_path / "a", tmp_path / "b")
    assert any(f.startswith("iter_1/prior.pt[w]: tensors differ") for f in found), found
    proc = subprocess.run(
        [sys.executable, "-m", "empriors", "diff", str(tmp_path / "a"), str(tmp_path / "nope")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1 and "nope does not exist" in proc.stderr


def test_lineage_listings_compare_without_hosts_times_hashes_and_attempts(tmp_path):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    a, b = tmp_path / "a" / "lineage.txt", tmp_path / "b" / "lineage.txt"
    line = "results/m/iter_1/prior.pt  [mstep] seed=7 code=0.1 host={h} {t0} -> {t1}\n"
    a.write_text(
        line.format(h="vm", t0="2026-12-04T22:39:24+00:00", t1="2026-12-04T22:39:30+00:00")
        + "  input results/m/iter_0/prior.pt sha256=3580c7840cb378f1 (ok)\n"
    )
    b.write_text(
        line.format(h="node7", t0="2026-12-05T01:00:00+00:00", t1="2026-12-05T01:00:09+00:00")
        + "  attempts: 2 (killed at step 40)\n"
        + "  input results/m/iter_0/prior.pt sha256=aaaaaaaaaaaaaaaa (ok)\n"
    )
    assert run_differences(a, b) == []
    b.write_text(b.read_text().replace("seed=7", "seed=8"))
    assert run_differences(a, b)  # the seed is content

import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch

from empriors.data.io import (
    ArtifactError,
    lineage,
    load_checkpoint,
    now,
    provenance,
    read_h5,
    read_provenance,
    save_checkpoint,
    write_h5,
)


def test_h5_roundtrip_with_provenance(tmp_path):
    p = tmp_path / "a.h5"
    prov = provenance("test", {"x": 1}, [], 3, now())
    write_h5(p, {"x": np.arange(6.0).reshape(2, 3)}, prov, {"dim": 3})
    arrays, attrs = read_h5(p, ["x"])
    assert arrays["x"].shape == (2, 3) and attrs["dim"] == 3
    assert read_provenance(p)["seed"] == 3


def test_failed_write_leaves_nothing(tmp_path):
    p = tmp_path / "a.h5"
    with pytest.raises(TypeError):
        write_h5(p, {"x": object()}, {}, {})
    assert list(tmp_path.iterdir()) == []


def test_truncated_and_missing_files(tmp_path):
    p = tmp_path / "a.h5"
    write_h5(p, {"x": np.zeros(1000)}, {}, {})
    p.write_bytes(p.read_bytes()[:500])
    with pytest.raises(ArtifactError, match="truncated"):
        read_h5(p, ["x"])
    with pytest.raises(ArtifactError, match="not found"):
        read_h5(tmp_path / "none.h5", ["x"])
    with pytest.raises(ArtifactError, match="not found"):
        load_checkpoint(tmp_path / "none.pt")
    c = tmp_path / "c.pt"
    save_checkpoint(c, {"w": torch.ones(100)}, {})
    c.write_bytes(c.read_bytes()[:50])
    with pytest.raises(ArtifactError, match="cannot read"):
        load_checkpoint(c)


def test_missing_dataset_and_nan(tmp_path):
    p = tmp_path / "a.h5"
    write_h5(p, {"x": np.array([1.0, np.nan])}, {}, {})
    with pytest.raises(ArtifactError, match="lacks"):
        read_h5(p, ["y"])
    with pytest.raises(ArtifactError, match="NaN"):
        read_h5(p, ["x"])


def test_lineage_walks_inputs_and_flags_changes(tmp_path):
    a, b = tmp_path / "a.h5", tmp_path / "b.pt"
    write_h5(a, {"x": np.zeros(3)}, provenance("corrupt", {"n": 3}, [], 0, now()))
    save_checkpoint(b, {"w": torch.zeros(2)}, provenance("mstep", {"lr": 1}, [a], 1, now()))
    text = "\n".join(lineage(b))
    assert "[mstep]" in text and "[corrupt]" in text and "(ok)" in text
    with h5py.File(a, "a") as f:
        f.attrs["touched"] = 1
    assert "CHANGED" in "\n".join(lineage(b))


def test_a_killed_write_leaves_no_temp_file_after_the_next_write(tmp_path):
    """SIGKILL inside a write leaves its temp file; the target's next write removes it (and
    the random temp names of earlier versions)."""
    target = tmp_path / "truth.h5"
    writer = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITE, str(target)], stdout=subprocess.PIPE, text=True
    )
    assert writer.stdout.readline().strip() == "writing"
    writer.kill()
    writer.wait()
    (tmp_path / ".truth.h5.k2j4x9.tmp").write_text("an older version's leftover")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".truth.h5.k2j4x9.tmp", ".truth.h5.tmp"]
    write_h5(target, {"x": torch.zeros(3)}, {"stage": "test"})
    assert [p.name for p in tmp_path.iterdir()] == ["truth.h5"]


KILLED_WRITE = """
import sys, time
from empriors.data.io import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    tmp.write_bytes(b"half an HDF5 file")
    print("writing", flush=True)
    time.sleep(60)
"""

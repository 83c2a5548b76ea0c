"""E-step shards sharing one GPU on one machine (local profile): with shards_per_gpu: 2 and
gpu_slots = 2, the two shards of a lap run side by side and the M-step asks for a whole GPU
(two slots); with one slot, the shards take turns.

The machine has no GPU: ``device: auto`` makes the workflow request GPU resources while the
stages run on the CPU, which is all the scheduling needs.
"""

from __future__ import annotations

import datetime as dt

import pytest
from workflow_support import make_project, run, snakemake

from empriors.data.io import read_provenance

pytestmark = pytest.mark.workflow

SHARE = """
device: auto
shards_per_gpu: 2
dvc: {enabled: false}
experiments:
  manifold:
    data: {n_train: 256, n_eval: 128}
    init: {rounds: 1, steps: 8}
    em: {iterations: 1, shards: 2}
    estep: {steps: 300, batch_size: 256}
    mstep: {steps: 50, batch_size: 64, ppca_samples: 256}
"""


def _interval(path):
    prov = read_provenance(path)
    return dt.datetime.fromisoformat(prov["started"]), dt.datetime.fromisoformat(prov["finished"])


def _overlap(a, b) -> bool:
    return a[0] < b[1] and b[0] < a[1]


@pytest.mark.parametrize("slots, shared", [(2, True), (1, False)])
def test_shards_share_a_gpu_slot_and_the_mstep_holds_a_whole_gpu(tmp_path, slots, shared):
    project = make_project(tmp_path)
    (project / "share.yaml").write_text(SHARE)
    command = ["results/manifold/iter_1/prior.pt", "--profile", "local", "--configfile",
               "config/demo.yaml", "share.yaml", "--cores", "2", "--resources",
               f"gpu_slots={slots}"]  # fmt: skip
    proc = run(snakemake(*command), project)
    mstep_block = (proc.stdout + proc.stderr).split("rule mstep:", 1)[1].split("\n\n", 1)[0]
    # a whole GPU: both slots (Snakemake clamps a request to the machine's cap)
    assert f"gpu_slots={slots}" in mstep_block.replace(" ", "")
    lap = project / "results" / "manifold" / "iter_1"
    shard_0, shard_1 = (_interval(lap / f"samples_{s}.h5") for s in (0, 1))
    assert _overlap(shard_0, shard_1) is shared

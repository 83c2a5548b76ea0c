"""Methods side by side: per method and iteration, the experiment's metric, the elapsed wall
time and the compute hours of the iteration's jobs, read from the artifacts' provenance.

An iteration's jobs are its E-step shards and M-step (iter_k/), lap 0's init_prior, DiffEM's
``final`` prior. wall_s = last finish - first start over those jobs (shards may overlap);
job_hours = the sum of the jobs' durations; gpu_hours = job_hours when the jobs ran on a GPU
(one per job, the workflow's resources), else 0.
"""

from __future__ import annotations

import csv
from datetime import datetime
from pathlib import Path

from empriors.data.io import read_provenance

# The metric each experiment kind's CSV reports, in order of preference.
METRICS = ("sinkhorn", "fid", "fd_pixels")


def _time(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp)


def iteration_cost(files: list[Path]) -> dict[str, float]:
    """wall_s and job_hours of the jobs that wrote ``files`` (one job per file)."""
    spans = []
    for f in files:
        prov = read_provenance(f)
        spans.append((_time(prov["started"]), _time(prov["finished"])))
    if not spans:
        return {"wall_s": float("nan"), "job_hours": float("nan")}
    wall = (max(e for _, e in spans) - min(s for s, _ in spans)).total_seconds()
    job = sum((e - s).total_seconds() for s, e in spans) / 3600
    return {"wall_s": wall, "job_hours": job}


def iteration_files(root: Path, iteration: str) -> list[Path]:
    folder = root / f"iter_{iteration}"
    return sorted(folder.glob("samples_*.h5")) + [folder / "prior.pt"]


def method_rows(
    experiment: str, method: str, metric_csv: Path, on_gpu: bool
) -> list[dict[str, object]]:
    """The rows of one experiment (one method): its metric per iteration and the cost."""
    with open(metric_csv) as f:
        table = list(csv.DictReader(f))
    metric = next((m for m in METRICS if m in table[0]), None)
    if metric is None:
        raise ValueError(f"{metric_csv}: none of the metric columns {METRICS}")
    root = metric_csv.parent
    rows = []
    for r in table:
        cost = iteration_cost(iteration_files(root, r["iteration"]))
        rows.append(
            {
                "experiment": experiment,
                "method": method,
                "iteration": r["iteration"],
                "metric": metric,
                "value": float(r[metric]),
                "wall_s": round(cost["wall_s"], 1),
                # 1e-8 h = 36 us: below the stamps' millisecond resolution.
                "job_hours": round(cost["job_hours"], 8),
                "gpu_hours": round(cost["job_hours"], 8) if on_gpu else 0.0,
            }
        )
    return rows

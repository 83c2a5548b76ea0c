"""Reading and writing the artifacts stages pass each other: observations.h5 (y and the
operator's parameters), prior checkpoints, sample files, and the CSV/JSON tables."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import torch

from empriors.config import ExperimentSettings
from empriors.data.io import ArtifactError, atomic_path, load_checkpoint, read_h5, save_checkpoint
from empriors.gaussian import LowRankGaussian
from empriors.methods.prior import Prior, build_denoiser
from empriors.operators import operator_from_parameters

OPERATOR_KEYS = {
    "projection": ("matrices",),
    "pixel_mask": ("masks",),
    "gaussian_blur": ("shape", "kernel_size", "std"),
    "kspace_columns": ("masks", "shape"),
}


def load_observations(path: str | Path):
    """y (N, m), the operator, the signal dimension and the image shape (None: not images)."""
    _, attrs = read_h5(path, [])
    kind = attrs.get("operator")
    if kind not in OPERATOR_KEYS:
        raise ArtifactError(f"{path}: unsupported operator {kind!r}")
    keys = [f"operator/{k}" for k in OPERATOR_KEYS[kind]]
    arrays, _ = read_h5(path, ["y", *keys])
    y = arrays["y"]
    op = operator_from_parameters(kind, {k: arrays[f"operator/{k}"] for k in OPERATOR_KEYS[kind]})
    if kind != "gaussian_blur" and len(op) != y.shape[0]:  # the blur is shared
        raise ArtifactError(f"{path}: {y.shape[0]} observations but {len(op)} operators")
    shape = tuple(int(v) for v in attrs["shape"]) if "shape" in attrs else None
    dim = int(attrs["dim"])
    _check_operator_fits(path, y, op, dim)
    return y, op, dim, shape


def _check_operator_fits(path, y: torch.Tensor, op, dim: int) -> None:
    """A x of one signal (dim,) must have the shape of one observation y_i: else the file's
    y and its operators (or its ``dim``) come from different runs."""
    try:
        one = op[:1].to(dtype=torch.float64)
        simulated = one(torch.zeros(1, dim, dtype=torch.float64))
    except (RuntimeError, ValueError) as e:
        raise ArtifactError(
            f"{path}: its {type(op).__name__} operators do not act on signals of dimension {dim} "
            f"(the file's dim): {e}"
        ) from None
    if tuple(simulated.shape[1:]) != tuple(y.shape[1:]):
        raise ArtifactError(
            f"{path}: observations y have shape {tuple(y.shape[1:])} each, but its operators "
            f"give A x of shape {tuple(simulated.shape[1:])} (y and the operators of "
            "different runs?)"
        )


def save_prior(path, prior: Prior, extra: dict, prov: dict):
    payload = {"gaussian": prior.gaussian.state_dict(), "features": prior.gaussian.dim, **extra}
    if prior.network is not None:
        payload["network"] = prior.network.state_dict()
        payload["network_condition"] = prior.network.condition_features
    if prior.flow is not None:  # FlowDiff: the flow with the sizes that rebuild it
        payload["flow"] = prior.flow.state_dict()
        payload["flow_transforms"] = prior.flow.transforms
        payload["flow_hidden"] = list(prior.flow.hidden)
    save_checkpoint(path, payload, prov)


def load_prior(
    path, settings: ExperimentSettings, dim: int | None = None, against: str | None = None
) -> Prior:
    """The prior saved at ``path``; ``dim``: the signal dimension it must have, that of the
    file ``against`` (the observations, the E-step samples, the truth)."""
    state = load_checkpoint(path)
    for key in ("gaussian", "features"):
        if key not in state:
            raise ArtifactError(f"{path} is not a prior checkpoint (no {key!r})")
    gaussian = LowRankGaussian.from_state_dict(state["gaussian"])
    if dim is not None and gaussian.dim != dim:
        raise ArtifactError(
            f"{path}: a prior of dimension {gaussian.dim}, but the signals of "
            f"{against or 'the observations'} have dimension {dim} (a prior of another "
            "experiment?)"
        )
    network = flow = None
    try:
        if "network" in state:
            condition = int(state.get("network_condition", 0))
            network = build_denoiser(settings, int(state["features"]), condition)
            network.load_state_dict(state["network"])
            network = network.to(settings.device).eval()
        if "flow" in state:
            from empriors.methods.flowdiff import flow_from_state

            flow = flow_from_state(
                state["flow"], int(state["flow_transforms"]), tuple(state["flow_hidden"])
            )
    except RuntimeError as e:
        raise ArtifactError(f"{path}: weights do not fit the configured network: {e}") from e
    return Prior(gaussian, network, flow)


def iteration_order(iteration: int | str) -> tuple[int, int]:
    """Sort key: laps in order, ``final`` last."""
    return (1, 0) if iteration == "final" else (0, int(iteration))


def samples_by_iteration(paths) -> dict[int, torch.Tensor]:
    """{iteration: samples x} of sample files that record their iteration."""
    out = {}
    for p in paths:
        arrays, attrs = read_h5(p, ["x"])
        out[int(attrs["iteration"])] = arrays["x"]
    return out


def estep_rows(paths) -> tuple[torch.Tensor, torch.Tensor, list[dict]]:
    """The E-step samples x (n, d) of all shards, their observation indices (n,) and each
    shard's attributes."""
    shards = [read_h5(p, ["x", "index"]) for p in paths]
    x = torch.cat([a["x"] for a, _ in shards])
    return x, torch.cat([a["index"] for a, _ in shards]).long(), [attrs for _, attrs in shards]


def read_csv(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def write_csv(path, rows: list[dict]):
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def write_json(path, obj):
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True))

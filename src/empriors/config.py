"""The only module that knows config keys: a validated experiment config -> typed settings.

The Snakefile validates the whole config against workflow/schemas/config.schema.yaml before
any job runs; the CLI receives one experiment's resolved config as JSON and calls
:func:`experiment_settings`, which validates again (so the CLI is safe on its own) and builds
the objects the methods use.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import torch
import yaml

from empriors.diffusion import VESchedule
from empriors.train import TrainSettings

# The schema lives with the workflow (one source of truth); the package is installed editable.
SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """The config does not satisfy the schema or names something unknown."""


def load_schema() -> dict:
    if not SCHEMA_PATH.exists():
        raise ConfigError(
            f"config schema not found at {SCHEMA_PATH}: install the package "
            "editable from the repository (pip install -e .)"
        )
    with open(SCHEMA_PATH) as f:
        return yaml.safe_load(f)


# Keys that shape only the workflow's DAG. The Snakefile leaves them out of the config it
# passes to stages (so extending a run reruns nothing); placeholders keep the schema whole.
WORKFLOW_ONLY_PLACEHOLDERS = {
    "enabled": True,
    "em": {"iterations": 1},
    "evaluate": {"figure_iterations": [0]},
}


def _with_placeholders(cfg: dict) -> dict:
    out = dict(cfg)
    for key, value in WORKFLOW_ONLY_PLACEHOLDERS.items():
        if isinstance(value, dict):
            if isinstance(out.get(key), dict):
                out[key] = {**value, **out[key]}
        else:
            out.setdefault(key, value)
    return out


def validate_experiment(cfg: dict) -> None:
    """Validate one experiment's block against the schema's experiment definition."""
    cfg = _with_placeholders(cfg)
    schema = load_schema()
    sub = {"$defs": schema["$defs"], **schema["$defs"]["experiment"]}
    try:
        jsonschema.validate(cfg, sub)
    except jsonschema.ValidationError as e:
        where = "/".join(str(p) for p in e.absolute_path) or "(top)"
        raise ConfigError(f"config error at {where}: {e.message}") from None


@dataclass(frozen=True)
class SamplerSettings:
    method: str
    steps: int
    corrector_tau: float = 0.1


@dataclass(frozen=True)
class MMPSSettings:
    covariance: str
    sigma_y2: float
    cg_rtol: float
    cg_maxiter: int | None


@dataclass(frozen=True)
class NetworkSettings:
    kind: str
    hidden: tuple[int, ...]
    embedding: int


@dataclass(frozen=True)
class ExperimentSettings:
    name: str
    seed: int
    raw: dict  # the experiment's config block (goes into provenance)
    device: torch.device
    schedule: VESchedule
    network: NetworkSettings
    init_rounds: int
    init_rank: int | None
    init_sampler: SamplerSettings
    init_n_fit: int | None
    shards: int
    estep_sampler: SamplerSettings
    estep_mmps: MMPSSettings
    estep_batch: int
    keep_range: float | None
    ppca_samples: int
    ppca_rank: int | None
    train: TrainSettings
    eval_samples: int
    eval_sampler: SamplerSettings
    sinkhorn_reg: float
    sinkhorn_iterations: int


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("config asks for device 'cuda' but no GPU is visible")
    return torch.device(name)


def experiment_settings(
    name: str, cfg: dict, seed: int, device: str = "auto"
) -> ExperimentSettings:
    validate_experiment(cfg)
    init, est, mst, ev = cfg["init"], cfg["estep"], cfg["mstep"], cfg["evaluate"]
    return ExperimentSettings(
        name=name,
        seed=seed,
        raw=cfg,
        device=_device(device),
        schedule=VESchedule(cfg["diffusion"]["sigma_min"], cfg["diffusion"]["sigma_max"]),
        network=NetworkSettings(
            cfg["network"]["kind"], tuple(cfg["network"]["hidden"]), cfg["network"]["embedding"]
        ),
        init_rounds=init["rounds"],
        init_rank=init["rank"],
        init_n_fit=init["n_fit"],
        init_sampler=SamplerSettings(init["sampler"], init["steps"]),
        shards=cfg["em"]["shards"],
        estep_sampler=SamplerSettings(est["sampler"], est["steps"], est["corrector_tau"]),
        estep_mmps=MMPSSettings(
            est["covariance"], est["sigma_y2"], est["cg_rtol"], est["cg_maxiter"]
        ),
        estep_batch=est["batch_size"],
        keep_range=est["keep_range"],
        ppca_samples=mst["ppca_samples"],
        ppca_rank=mst["ppca_rank"],
        train=TrainSettings(
            steps=mst["steps"],
            batch_size=mst["batch_size"],
            lr=mst["lr"],
            lr_end=mst["lr_end"],
            clip=mst["clip"],
            ema=mst["ema"],
            resume_every_s=mst["resume_every_s"],
        ),
        eval_samples=ev["n_samples"],
        eval_sampler=SamplerSettings(ev["sampler"], ev["steps"], est["corrector_tau"]),
        sinkhorn_reg=ev["sinkhorn_reg"],
        sinkhorn_iterations=ev["sinkhorn_iterations"],
    )


def parse_json_config(text: str) -> dict:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"--config is not valid JSON: {e}") from None

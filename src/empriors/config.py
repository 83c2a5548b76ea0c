"""The only module that knows config keys: a validated experiment config -> typed settings.

The Snakefile validates the whole config against workflow/schemas/config.schema.yaml before
any job runs. Each rule names the config sections its stage reads and passes only those, as
JSON (so that changing, say, ``mstep`` reruns M-steps but not the data or the first E-step);
:class:`ExperimentSettings` validates the sections it got and builds typed settings on demand,
with a clear error if a stage asks for a section it was not given.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from functools import cached_property

import jsonschema
import torch

from empriors import distributed
from empriors.compute import Compute
from empriors.diffusion import VESchedule
from empriors.operators import (
    GaussianBlur,
    KSpaceColumnMask,
    LinearOperator,
    PixelMask,
    Projection,
)
from empriors.schema import ConfigError, load_schema  # ConfigError: the stages import it here
from empriors.train import Augment, TrainSettings

# Keys that shape only the DAG, never an artifact: the workflow leaves them out of stage
# configs (workflow/rules/common.smk), so extending a run reruns nothing that is finished.
WORKFLOW_ONLY = (
    ("em", "iterations"),
    ("em", "stop_when"),
    ("evaluate", "figure_iterations"),
    ("mstep", "gpus"),
)


def validate_sections(cfg: dict) -> None:
    """Validate each given section of one experiment against the schema."""
    schema = load_schema()
    experiment = schema["$defs"]["experiment"]
    for name, value in cfg.items():
        if name not in experiment["properties"]:
            raise ConfigError(f"config error: unknown experiment section {name!r}")
        sub = {"$defs": schema["$defs"], **experiment["properties"][name]}
        sub = json.loads(json.dumps(sub))  # a copy we may relax
        for parent, key in WORKFLOW_ONLY:
            if parent != name:
                continue
            for variant in [sub, *sub.get("oneOf", [])]:  # sections with kinds are oneOf
                if key in variant.get("required", []):
                    variant["required"] = [r for r in variant["required"] if r != key]
        try:
            jsonschema.validate(value, sub)
        except jsonschema.ValidationError as e:
            where = "/".join(str(p) for p in (name, *e.absolute_path))
            raise ConfigError(f"config error at {where}: {e.message}") from None


def validate_study(name: str, cfg: dict) -> None:
    """Validate a study's block (``studies: NAME:``) against the schema."""
    schema = load_schema()
    sub = {"$defs": schema["$defs"], **schema["$defs"][name]}
    sub["required"] = [k for k in sub.get("required", []) if k != "enabled"]
    try:
        jsonschema.validate({k: v for k, v in cfg.items() if k != "enabled"}, sub)
    except jsonschema.ValidationError as e:
        where = "/".join(str(p) for p in ("studies", name, *e.absolute_path))
        raise ConfigError(f"config error at {where}: {e.message}") from None


def parse_json_config(text: str) -> dict:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"--config is not valid JSON: {e}") from None


@dataclass(frozen=True)
class SamplerSettings:
    method: str
    steps: int
    corrector_tau: float = 0.1


@dataclass(frozen=True)
class PosteriorSettings:
    """Which posterior sampler the E-step uses, with its options (see empriors.posterior)."""

    kind: str
    covariance: str
    sigma_y2: float
    cg_rtol: float
    cg_maxiter: int | None
    dps_zeta: float = 1.0
    diffpir_lambda: float = 10.0


@dataclass(frozen=True)
class FlowSettings:
    """FlowDiff's conditional flow (see empriors.methods.flowdiff): zuko NSF with
    ``transforms`` coupling transforms of ``hidden`` widths, trained ``steps`` Adam steps of
    ``batch_size`` observations at ``lr`` per round, the likelihood N(y; A x, sigma_y^2 I)."""

    transforms: int
    hidden: tuple[int, ...]
    steps: int
    batch_size: int
    lr: float
    sigma_y: float
    clip: float | None = 1.0
    rank: int | None = None  # axes of the representation (None: q0's)


@dataclass(frozen=True)
class NetworkSettings:
    """``mlp``: hidden, embedding. ``unet``: shape (C, H, W), channels, blocks,
    attention levels with ``heads`` heads, embedding, dropout, pixel-unshuffle factor."""

    kind: str
    embedding: int
    hidden: tuple[int, ...] = ()
    shape: tuple[int, int, int] | None = None
    channels: tuple[int, ...] = ()
    blocks: tuple[int, ...] = ()
    attention: tuple[tuple[int, int], ...] = ()  # (level, heads)
    dropout: float = 0.0
    unshuffle: int = 1


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("config asks for device 'cuda' but no GPU is visible")
    return torch.device(name)


class ExperimentSettings:
    """Typed views of one experiment's (partial) config, built when first used.

    ``precision`` and ``compile`` (the config's global keys) say how the networks run
    (:attr:`compute`); ``ranks`` is this process's place in a data-parallel M-step (set by
    the mstep stage, see :mod:`empriors.distributed`).
    """

    def __init__(
        self,
        name: str,
        cfg: dict,
        seed: int,
        device: str = "auto",
        precision: str = "auto",
        compile: bool = False,
    ):
        validate_sections(cfg)
        self.name, self.raw, self.seed = name, cfg, seed
        self.device = _device(device)
        try:
            self.compute = Compute.from_config(self.device, precision, compile)
        except ValueError as e:
            raise ConfigError(f"config error at precision: {e}") from None
        self.ranks = distributed.SINGLE

    def with_section(self, name: str, **changes) -> ExperimentSettings:
        """A copy whose section ``name`` has ``changes`` (e.g. the MRI reconstructions' own
        steps and CG iterations), with every derived setting recomputed."""
        other = object.__new__(type(self))
        kept = ("name", "raw", "seed", "device", "compute", "ranks")
        other.__dict__.update({k: self.__dict__[k] for k in kept})
        other.raw = {**self.raw, name: {**self.section(name), **changes}}
        return other

    def section(self, name: str) -> dict:
        if name not in self.raw:
            raise ConfigError(f"this stage was not given the config section {name!r}")
        return self.raw[name]

    @cached_property
    def method(self) -> str:
        """em_mmps | diffem | flowdiff (every stage is given it)."""
        return self.raw.get("method", "em_mmps")

    def random_operator(
        self, n: int, dim: int, shape: tuple[int, ...] | None, generator: torch.Generator
    ) -> LinearOperator:
        """n forward operators of the configured observation family, drawn from
        ``generator``: the corrupt stage's draw, and DiffEM's fresh corruptions.
        ``shape``: (C, H, W) of images, None for the manifold."""
        obs = self.section("observation")
        kind = obs["kind"]
        if kind == "projection":
            return Projection.random(n, obs["rows"], dim, generator)
        if shape is None:
            raise ConfigError(f"observation.kind {kind!r} needs image data")
        if kind == "pixel_mask":
            return PixelMask.random_shared(n, shape, obs["missing"], generator)
        if kind == "gaussian_blur":
            return GaussianBlur(shape, obs["kernel_size"], obs["std"])
        if kind == "kspace_columns":
            return KSpaceColumnMask.random(n, tuple(shape[1:]), obs["acceleration"], generator)
        raise ConfigError(f"unknown observation.kind {kind!r}")

    @cached_property
    def schedule(self) -> VESchedule:
        d = self.section("diffusion")
        return VESchedule(d["sigma_min"], d["sigma_max"])

    @cached_property
    def network(self) -> NetworkSettings:
        n = self.section("network")
        if n["kind"] == "mlp":
            return NetworkSettings("mlp", n["embedding"], hidden=tuple(n["hidden"]))
        return NetworkSettings(
            "unet",
            n["embedding"],
            shape=tuple(n["shape"]),
            channels=tuple(n["channels"]),
            blocks=tuple(n["blocks"]),
            attention=tuple((level, n["heads"]) for level in n["attention_levels"]),
            dropout=n["dropout"],
            unshuffle=n["unshuffle"],
        )

    # q0 --------------------------------------------------------------------------------
    @cached_property
    def init(self) -> dict:
        return self.section("init")

    @cached_property
    def init_sampler(self) -> SamplerSettings:
        return SamplerSettings(self.init["sampler"], self.init["steps"])

    @cached_property
    def init_posterior(self) -> PosteriorSettings:
        # For a Gaussian prior MMPS with the cov_x covariance is exact; CG runs to tolerance
        # unless init.cg_maxiter caps it (the MRI reference: 5 iterations).
        return PosteriorSettings(
            "mmps",
            "cov_x",
            self.init["sigma_y2"],
            self.init["cg_rtol"],
            self.init.get("cg_maxiter"),
        )

    # E-step ----------------------------------------------------------------------------
    @cached_property
    def shards(self) -> int:
        return self.section("em")["shards"]

    @cached_property
    def estep_sampler(self) -> SamplerSettings:
        e = self.section("estep")
        return SamplerSettings(e["sampler"], e["steps"], e["corrector_tau"])

    @cached_property
    def estep_posterior(self) -> PosteriorSettings:
        e = self.section("estep")
        return PosteriorSettings(
            e["posterior"],
            e["covariance"],
            e["sigma_y2"],
            e["cg_rtol"],
            e["cg_maxiter"],
            e.get("dps_zeta", 1.0),
            e.get("diffpir_lambda", 10.0),
        )

    @cached_property
    def samples_per_observation(self) -> int:
        return self.section("estep").get("samples_per_observation", 1)

    @cached_property
    def estep_batch(self) -> int:
        return self.section("estep")["batch_size"]

    @cached_property
    def keep_range(self) -> float | None:
        return self.section("estep")["keep_range"]

    # M-step ----------------------------------------------------------------------------
    @cached_property
    def ppca_samples(self) -> int:
        return self.section("mstep")["ppca_samples"]

    @cached_property
    def ppca_rank(self) -> int | None:
        return self.section("mstep")["ppca_rank"]

    @cached_property
    def train(self) -> TrainSettings:
        m = self.section("mstep")
        return TrainSettings(
            steps=m["steps"],
            batch_size=m["batch_size"],
            lr=m["lr"],
            lr_end=m["lr_end"],
            clip=m["clip"],
            ema=m["ema"],
            ema_warmup=m.get("ema_warmup", False),
            resume_every_s=m["resume_every_s"],
            augment=self._augment(m.get("augment")),
        )

    @cached_property
    def final_train(self) -> TrainSettings:
        """DiffEM's final unconditional prior: the M-step's settings, ``final_steps`` steps."""
        steps = self.section("mstep").get("final_steps") or self.train.steps
        return replace(self.train, steps=steps)

    def _augment(self, block: dict | None) -> Augment | None:
        if not block or not (block["hflip"] or block["shift"]):
            return None
        shape = self.network.shape
        if shape is None:
            raise ConfigError("mstep.augment needs image data (a unet network with a shape)")
        return Augment(shape, block["hflip"], block["shift"])

    # FlowDiff --------------------------------------------------------------------------
    @cached_property
    def flow(self) -> FlowSettings:
        f = self.section("flow")
        sigma_y = f.get("sigma_y") or self.section("observation")["sigma_y"]
        return FlowSettings(
            f["transforms"],
            tuple(f["hidden"]),
            f["steps"],
            f["batch_size"],
            f["lr"],
            sigma_y,
            f.get("clip", 1.0),
            f.get("rank"),
        )

    # evaluation ------------------------------------------------------------------------
    @cached_property
    def evaluate(self) -> dict:
        return self.section("evaluate")

    @cached_property
    def eval_sampler(self) -> SamplerSettings:
        e = self.evaluate
        return SamplerSettings(e["sampler"], e["steps"], e["corrector_tau"])

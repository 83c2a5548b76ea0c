"""Typed settings of one config section each (workflow/schemas/config.schema.yaml names the
keys): ``from_config(section)`` turns the validated dict into a frozen dataclass, so a stage
reads ``s.estep.posterior.cg_maxiter`` rather than a string key.

The ``data:`` section stays a dict: its keys differ by data kind and only the data loaders
(empriors.data) read them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

from empriors.operators import (
    GaussianBlur,
    KSpaceColumnMask,
    LinearOperator,
    PixelMask,
    Projection,
)
from empriors.schema import ConfigError
from empriors.train import Augment, TrainSettings


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
    cg: str = "per_sample"  # or "batch": one CG per cg_group rows (the reference code's)
    cg_group: int | None = None  # rows sharing one CG (None: the sampler's batch)


@dataclass(frozen=True)
class ObservationSettings:
    """``observation:``: the forward operator family A and the noise sigma_y of
    y = A x + sigma_y e. Only the keys of ``kind`` are set (rows: projection; missing:
    pixel_mask; kernel_size, std: gaussian_blur; acceleration: kspace_columns)."""

    kind: str
    sigma_y: float
    rows: int | None = None
    missing: float | None = None
    kernel_size: int | None = None
    std: float | None = None
    acceleration: float | None = None

    @classmethod
    def from_config(cls, o: dict) -> ObservationSettings:
        keys = ("rows", "missing", "kernel_size", "std", "acceleration")
        return cls(o["kind"], o["sigma_y"], **{k: o[k] for k in keys if k in o})

    def random_operator(
        self, n: int, dim: int, shape: tuple[int, ...] | None, generator: torch.Generator
    ) -> LinearOperator:
        """n forward operators of this family, drawn from ``generator``: the corrupt stage's
        draw, and DiffEM's fresh corruptions. ``shape``: (C, H, W) of images, None for the
        manifold."""
        if self.kind == "projection":
            return Projection.random(n, self.rows, dim, generator)
        if shape is None:
            raise ConfigError(f"observation.kind {self.kind!r} needs image data")
        if self.kind == "pixel_mask":
            return PixelMask.random_shared(n, shape, self.missing, generator)
        if self.kind == "gaussian_blur":
            return GaussianBlur(shape, self.kernel_size, self.std)
        if self.kind == "kspace_columns":
            return KSpaceColumnMask.random(n, tuple(shape[1:]), self.acceleration, generator)
        raise ConfigError(f"unknown observation.kind {self.kind!r}")


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

    @classmethod
    def from_config(cls, n: dict) -> NetworkSettings:
        if n["kind"] == "mlp":
            return cls("mlp", n["embedding"], hidden=tuple(n["hidden"]))
        return cls(
            "unet",
            n["embedding"],
            shape=tuple(n["shape"]),
            channels=tuple(n["channels"]),
            blocks=tuple(n["blocks"]),
            attention=tuple((level, n["heads"]) for level in n["attention_levels"]),
            dropout=n["dropout"],
            unshuffle=n["unshuffle"],
        )


@dataclass(frozen=True)
class InitSettings:
    """``init:``: q0, a Gaussian fitted by ``rounds`` rounds of Monte-Carlo EM (rank ``rank``,
    None: full covariance) on the first ``n_fit`` observations (None: all)."""

    rounds: int
    rank: int | None
    batch_size: int
    n_fit: int | None
    sampler: SamplerSettings
    posterior: PosteriorSettings

    @classmethod
    def from_config(cls, i: dict) -> InitSettings:
        # For a Gaussian prior MMPS with the cov_x covariance is exact; CG runs to tolerance
        # unless init.cg_maxiter caps it (the MRI reference: 5 iterations).
        posterior = PosteriorSettings(
            "mmps",
            "cov_x",
            i["sigma_y2"],
            i["cg_rtol"],
            i.get("cg_maxiter"),
            cg=i.get("cg", "per_sample"),
            cg_group=i.get("cg_group"),
        )
        sampler = SamplerSettings(i["sampler"], i["steps"])
        return cls(i["rounds"], i["rank"], i["batch_size"], i["n_fit"], sampler, posterior)


@dataclass(frozen=True)
class EMSettings:
    """``em:``: the laps' sharding (iterations and stop_when shape only the DAG)."""

    shards: int

    @classmethod
    def from_config(cls, e: dict) -> EMSettings:
        return cls(e["shards"])


@dataclass(frozen=True)
class EStepSettings:
    """``estep:``: the posterior sampler of every lap; ``batch_size`` is an int or ``auto``;
    samples of trained laps outside [-keep_range, keep_range] are dropped before the M-step
    (None: none). ``first_lap_sampler``: the sampler method of lap 1 (under q_0), where it
    differs (DiffEM's manifold code: PC, then DDPM; None: ``sampler``)."""

    sampler: SamplerSettings
    posterior: PosteriorSettings
    batch_size: int | str
    samples_per_observation: int
    keep_range: float | None
    first_lap_sampler: str | None = None

    def sampler_for(self, trained: bool) -> SamplerSettings:
        """The sampler of a lap whose prior is trained (a network) or q_0 (``trained`` False)."""
        if trained or self.first_lap_sampler is None:
            return self.sampler
        return replace(self.sampler, method=self.first_lap_sampler)

    @classmethod
    def from_config(cls, e: dict) -> EStepSettings:
        posterior = PosteriorSettings(
            e["posterior"],
            e["covariance"],
            e["sigma_y2"],
            e["cg_rtol"],
            e["cg_maxiter"],
            e.get("dps_zeta", 1.0),
            e.get("diffpir_lambda", 10.0),
            e.get("cg", "per_sample"),
            e.get("cg_group"),
        )
        return cls(
            SamplerSettings(e["sampler"], e["steps"], e["corrector_tau"]),
            posterior,
            e["batch_size"],
            e.get("samples_per_observation", 1),
            e["keep_range"],
            e.get("first_lap_sampler"),
        )

    def with_changes(self, steps: int | None = None, cg_maxiter: int | None = None):
        """These settings with other sampler steps and CG iterations (None: keep), e.g. the
        MRI reconstructions' own (the reference's Fig. 6: 64 steps, 5 CG iterations)."""
        sampler, posterior = self.sampler, self.posterior
        if steps is not None:
            sampler = replace(sampler, steps=steps)
        if cg_maxiter is not None:
            posterior = replace(posterior, cg_maxiter=cg_maxiter)
        return replace(self, sampler=sampler, posterior=posterior)


@dataclass(frozen=True)
class MStepSettings:
    """``mstep:``: the denoiser's training (``train``; DiffEM's final prior: ``final_train``,
    ``final_steps`` steps) and q_k's Gaussian part G_k: with ``moments`` "refit", PPCA of rank
    ``ppca_rank`` on ``ppca_samples`` samples every lap; with "fixed", q_0's fit for every lap
    (the manifold reference: mu_x, Sigma_x of fit_moments stay on the model, issue 19.4)."""

    train: TrainSettings
    final_train: TrainSettings
    ppca_samples: int
    ppca_rank: int | None
    moments: str = "refit"
    first_lap_pairs: str = "fresh"  # DiffEM: lap 1 trains on fresh corruptions or observed pairs

    @classmethod
    def from_config(
        cls, m: dict, image_shape: Callable[[], tuple[int, int, int] | None]
    ) -> MStepSettings:
        """``image_shape``: the network's (C, H, W), asked only when ``augment`` is on."""
        train = TrainSettings(
            steps=m["steps"],
            batch_size=m["batch_size"],
            lr=m["lr"],
            lr_end=m["lr_end"],
            clip=m["clip"],
            ema=m["ema"],
            ema_warmup=m.get("ema_warmup", False),
            resume_every_s=m["resume_every_s"],
            augment=_augment(m.get("augment"), image_shape),
            t_law=m.get("t_law", "beta33"),
        )
        final = replace(train, steps=m.get("final_steps") or train.steps)
        return cls(
            train,
            final,
            m["ppca_samples"],
            m["ppca_rank"],
            m.get("moments", "refit"),
            m.get("first_lap_pairs", "fresh"),
        )


def _augment(block: dict | None, image_shape) -> Augment | None:
    if not block:
        return None
    hue, saturation = block.get("hue", 0.0), block.get("saturation")
    if not (block["hflip"] or block["shift"] or hue or saturation):
        return None
    shape = image_shape()
    if shape is None:
        raise ConfigError("mstep.augment needs image data (a unet network with a shape)")
    if (hue or saturation) and shape[0] % 3:
        raise ConfigError(f"mstep.augment: hue/saturation need RGB images; {shape[0]} channel(s)")
    return Augment(
        shape, block["hflip"], block["shift"], hue, tuple(saturation) if saturation else None
    )


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

    @classmethod
    def from_config(cls, f: dict, observation_sigma_y: Callable[[], float]) -> FlowSettings:
        """``observation_sigma_y``: the observations' noise, asked when ``sigma_y`` is unset."""
        return cls(
            f["transforms"],
            tuple(f["hidden"]),
            f["steps"],
            f["batch_size"],
            f["lr"],
            f.get("sigma_y") or observation_sigma_y(),
            f.get("clip", 1.0),
            f.get("rank"),
        )


@dataclass(frozen=True)
class PaperMetricSettings:
    """``evaluate.paper_metric`` (manifold): the reference's curve metric (issue 19.7-8), on
    posterior samples of q_k for the first n_samples observations against the training
    latents: POT's Sinkhorn stopped at ``stop`` (or its iteration cap), S floored at ``floor``;
    the exact-OT check on ``exact_points`` points (None: all; 0: skipped)."""

    stop: float
    floor: float
    exact_points: int | None


@dataclass(frozen=True)
class EvaluateSettings:
    """``evaluate:``: the evaluation sampler and its sizes. Manifold: Sinkhorn's ``sinkhorn_reg``
    and ``sinkhorn_iterations``. Images: ``metric`` (fd_pixels | fid_inception), sample
    ``shards``, the posterior-examples figure's ``examples``, the clean set ``reference``
    (train | val). MRI: held-out reconstructions at ``accelerations``, ``reconstructions``
    slices each with ``posterior_samples`` samples, by the sampler with
    ``reconstruction_steps`` / ``reconstruction_cg_maxiter`` (None: the E-step's). Keys the
    experiment's kind has not are None."""

    sampler: SamplerSettings
    n_samples: int
    batch_size: int
    sinkhorn_reg: float | None = None
    sinkhorn_iterations: int | None = None
    metric: str | None = None
    inception_weights: str | None = None
    shards: int | None = None
    examples: int | None = None
    reference: str = "train"
    accelerations: tuple[float, ...] = ()
    reconstructions: int | None = None
    posterior_samples: int | None = None
    reconstruction_steps: int | None = None
    reconstruction_cg_maxiter: int | None = None
    paper_metric: PaperMetricSettings | None = None

    @classmethod
    def from_config(cls, e: dict) -> EvaluateSettings:
        optional = (
            "sinkhorn_reg",
            "sinkhorn_iterations",
            "metric",
            "inception_weights",
            "shards",
            "examples",
            "reference",
            "reconstructions",
            "posterior_samples",
            "reconstruction_steps",
            "reconstruction_cg_maxiter",
        )
        paper = e.get("paper_metric")
        return cls(
            SamplerSettings(e["sampler"], e["steps"], e["corrector_tau"]),
            e["n_samples"],
            e["batch_size"],
            accelerations=tuple(e.get("accelerations", ())),
            paper_metric=PaperMetricSettings(**paper) if paper else None,
            **{k: e[k] for k in optional if e.get(k) is not None},
        )

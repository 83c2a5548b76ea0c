"""The M-step optimisation loop: Adam, gradient clipping, optional EMA, LR schedule, and a
training state that is saved every few minutes and resumed after a crash.

Resuming is exact: the state holds the weights, Adam's moments, the LR schedule, the EMA, the
step counter and the random generator, so a run killed at any point and resumed produces the
same weights, bit for bit, as an uninterrupted one (tested end to end in tests/test_workflow.py).
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm.auto import tqdm

from empriors import distributed, preemption
from empriors.compute import Compute
from empriors.data.io import atomic_torch_save, load_checkpoint
from empriors.diffusion import VESchedule, denoising_loss
from empriors.distributed import Ranks
from empriors.resume import attempts, new_attempt

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Augment:
    """Random augmentation of flat images (B, C H W) of ``shape`` (C, H, W), in this order:
    each image is flipped horizontally with probability 1/2 (``hflip``); shifted by (dy, dx)
    uniform in [-shift, shift]^2, the border filled by reflection (``shift``); its hue turned
    by delta ~ U(-hue, hue) and its saturation scaled by f ~ U(saturation) in HSV (``hue``,
    ``saturation``: the reference code's random_hue / random_saturation of dm-pix, on
    (x + 2) / 4 in [0, 1]). Colour changes act on each group of 3 channels with the same
    draw, so an image and its stacked image-shaped condition change together."""

    shape: tuple[int, int, int]
    hflip: bool
    shift: int
    hue: float = 0.0
    saturation: tuple[float, float] | None = None

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        b = x.shape[0]
        img = x.reshape(b, *self.shape)
        if self.hflip:
            flip = torch.rand(b, generator=generator, device=x.device) < 0.5
            img = torch.where(flip[:, None, None, None], img.flip(-1), img)
        if self.shift:
            s = self.shift
            padded = torch.nn.functional.pad(img, (s, s, s, s), mode="reflect")
            d = torch.randint(0, 2 * s + 1, (b, 2), generator=generator, device=x.device)
            h, w = self.shape[1:]
            rows = (d[:, 0, None] + torch.arange(h, device=x.device))[:, None, :, None]
            cols = (d[:, 1, None] + torch.arange(w, device=x.device))[:, None, None, :]
            batch = torch.arange(b, device=x.device)[:, None, None, None]
            chan = torch.arange(self.shape[0], device=x.device)[None, :, None, None]
            img = padded[batch, chan, rows, cols]
        if self.hue or self.saturation:
            img = self._colour(img, generator)
        return img.reshape(b, -1)

    def _colour(self, img: Tensor, generator: torch.Generator) -> Tensor:
        b, c, h, w = img.shape
        if c % 3:
            raise ValueError(f"hue/saturation augmentation needs RGB groups; {c} channels")
        u = torch.rand(b, 2, generator=generator, device=img.device, dtype=img.dtype)
        delta = (2 * u[:, 0] - 1) * self.hue
        low, high = self.saturation or (1.0, 1.0)
        factor = low + (high - low) * u[:, 1]
        hsv = rgb_to_hsv((img.reshape(b, c // 3, 3, h, w) + 2) / 4)
        hue = (hsv[:, :, 0] + delta[:, None, None, None]) % 1.0
        sat = (hsv[:, :, 1] * factor[:, None, None, None]).clamp(0, 1)
        rgb = hsv_to_rgb(torch.stack([hue, sat, hsv[:, :, 2]], dim=2))
        return (rgb * 4 - 2).reshape(b, c, h, w)


def rgb_to_hsv(rgb: Tensor) -> Tensor:
    """(..., 3, H, W) RGB -> HSV, hue in [0, 1) (TensorFlow's and dm-pix's convention).
    Written here: torchvision's colour functions cannot load beside the CPU torch wheel, and
    its adjust_saturation blends with grey instead of scaling S."""
    r, g, b = rgb.unbind(-3)
    value, _ = rgb.max(-3)
    span = value - rgb.min(-3).values
    safe = torch.where(span > 0, span, torch.ones_like(span))
    hue = torch.where(
        value == r,
        ((g - b) / safe) % 6,
        torch.where(value == g, (b - r) / safe + 2, (r - g) / safe + 4),
    )
    hue = torch.where(span > 0, hue / 6, torch.zeros_like(hue))
    sat = torch.where(value > 0, span / torch.where(value > 0, value, 1.0), torch.zeros_like(span))
    return torch.stack([hue, sat, value], dim=-3)


def hsv_to_rgb(hsv: Tensor) -> Tensor:
    """Inverse of :func:`rgb_to_hsv`: channel n in (R, G, B) = (5, 3, 1) is
    v - v s clamp(min(k, 4 - k), 0, 1) with k = (n + 6 h) mod 6."""
    hue, sat, value = hsv.unbind(-3)
    n = torch.tensor([5.0, 3.0, 1.0], dtype=hsv.dtype, device=hsv.device)
    k = (n.view(*([1] * (hsv.ndim - 3)), 3, 1, 1) + 6 * hue.unsqueeze(-3)) % 6
    ramp = torch.minimum(k, 4 - k).clamp(0, 1)
    return value.unsqueeze(-3) * (1 - sat.unsqueeze(-3) * ramp)


@dataclass(frozen=True)
class TrainSettings:
    steps: int
    batch_size: int
    lr: float
    lr_end: float | None = None  # None: constant LR; else linear lr -> lr_end over the lap
    clip: float | None = 1.0
    ema: float | None = None  # EMA decay, None: no EMA (the saved weights are the raw ones)
    ema_warmup: bool = False  # decay min(ema, (1 + n) / (10 + n)) after n updates
    resume_every_s: float = 300.0
    augment: Augment | None = None
    t_law: str = "beta33"  # the law of the noise times (diffusion.TIME_LAWS)


def warmup_ema(decay: float):
    """AveragedModel's ``multi_avg_fn`` of an EMA whose decay warms up as
    d_n = min(decay, (1 + n) / (10 + n)) after n updates (the num_updates rule of
    TensorFlow's ExponentialMovingAverage; torch's get_ema_multi_avg_fn has a fixed decay).

    With a fixed decay d the weights of the first steps of a run keep the share d^N after N
    steps (0.999^3000 = 5%), which hurts a short run from a fresh network; with the warmup
    the average forgets them at the rate 1 - d_n, and d_n reaches 0.999 after ~9,000 updates.
    """

    def update(averaged: list[Tensor], current: list[Tensor], n: Tensor | int) -> None:
        d = min(decay, (1 + float(n)) / (10 + float(n)))
        for a, c in zip(averaged, current, strict=True):
            a.lerp_(c, 1 - d)

    return update


def _linear_decay(settings: TrainSettings):
    if settings.lr_end is None:
        return lambda step: 1.0
    end = settings.lr_end / settings.lr
    return lambda step: 1.0 - (1.0 - end) * min(step, settings.steps) / settings.steps


def _augment(augment: Augment, x: Tensor, condition: Tensor | None, generator):
    """The same flip and shift of an image and of its image-shaped condition (stacked as
    extra channels)."""
    if condition is None:
        return augment(x, generator), None
    c, h, w = augment.shape
    extra = condition.shape[1] // (h * w)
    both = replace(augment, shape=(c + extra, h, w))(torch.cat([x, condition], 1), generator)
    return both[:, : x.shape[1]], both[:, x.shape[1] :]


_HASH_CHUNK = 1 << 24  # elements per fingerprint update (64 MiB of float32)


def _fingerprint(denoiser: nn.Module, data: Tensor, condition: Tensor | None) -> str:
    """SHA-256 of what a run starts from: the data (and conditions) and the initial weights.
    A resume state is only valid for the same start: a rerun after its inputs changed (a new
    E-step, another previous lap) must not continue a stale run with matching settings."""
    digest = hashlib.sha256()
    tensors = [data, *([] if condition is None else [condition])]
    tensors += [v for _, v in sorted(denoiser.state_dict().items())]
    for x in tensors:
        digest.update(str((tuple(x.shape), x.dtype)).encode())
        flat = x.detach().reshape(-1)
        # streamed in chunks: no full host copy of a large (or on-device) training set; the
        # digest equals that of the whole byte string
        for chunk in flat.split(_HASH_CHUNK):
            digest.update(memoryview(chunk.cpu().contiguous().numpy()))
    return digest.hexdigest()


def _stop(ranks: Ranks, step: int, steps: int, resume_path: Path | None, save_state) -> None:
    """After ``step`` of ``steps``, on a stop signal: rank 0 saves the state, every rank
    waits for it, then the stage stops (:class:`preemption.Preempted`)."""
    if resume_path is not None and ranks.main:
        save_state(step)
    ranks.barrier()
    kept = f", saved to {resume_path}" if resume_path is not None else ""
    preemption.stop_if_requested(f"at step {step} of {steps}{kept}")
    raise preemption.Preempted(None, f"at step {step} of {steps}{kept}")  # another rank's signal


def train_denoiser(
    denoiser: nn.Module,
    data: Tensor,
    schedule: VESchedule,
    settings: TrainSettings,
    seed: int,
    resume_path: Path | None = None,
    progress: bool = True,
    condition: Tensor | None = None,
    compute: Compute | None = None,
    ranks: Ranks = distributed.SINGLE,
) -> tuple[dict[str, Tensor], list[float]]:
    """Minimise :func:`denoising_loss` on ``data`` (N, *S), batches drawn with replacement;
    with ``condition`` (N, m) (DiffEM), on the pairs (data_i, condition_i), augmented jointly.

    Returns the weights to save (EMA weights when ``settings.ema``) and the mean loss per
    1% of the run. If ``resume_path`` holds a state from an interrupted run with the same
    settings, training continues from it; the caller deletes it once the output is saved.

    ``compute``: the network's precision and compilation (None: float32, eager). ``ranks``:
    data parallelism (:mod:`empriors.distributed`): every rank draws the same global batch
    of ``settings.batch_size`` rows and computes the loss on its share; DDP averages the
    gradients, so the steps equal the 1-process run's; rank 0 alone saves resume states.
    The logged loss is the mean over the ranks (the global batch's loss).
    """
    device = data.device
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    optimizer = torch.optim.Adam(denoiser.parameters(), lr=settings.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _linear_decay(settings))
    ema = (
        AveragedModel(
            denoiser,
            multi_avg_fn=(warmup_ema if settings.ema_warmup else get_ema_multi_avg_fn)(
                settings.ema
            ),
        )
        if settings.ema
        else None
    )
    start, losses, window = 0, [], []
    log_every = max(1, settings.steps // 100)
    fingerprint = _fingerprint(denoiser, data, condition) if resume_path is not None else ""

    earlier: list[dict] = []  # the attempts of an interrupted run this one continues
    if resume_path is not None and resume_path.exists():
        state = load_checkpoint(resume_path)
        if state["settings"] != repr(settings) or state["seed"] != seed:
            log.warning("ignoring resume state %s: it was made with other settings", resume_path)
        elif state.get("fingerprint") != fingerprint:
            log.warning(
                "ignoring resume state %s: it was made from other data or initial weights",
                resume_path,
            )
        else:
            denoiser.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            if ema is not None:
                ema.load_state_dict(state["ema"])
            generator.set_state(state["generator"])
            start, losses, window = state["step"], list(state["losses"]), list(state["window"])
            earlier = list(state.get("attempts", []))
            log.info(
                "resumed training from %s at step %d of %d", resume_path, start, settings.steps
            )
    if resume_path is not None:
        new_attempt(resume_path, earlier, step=start)

    def save_state(step: int):
        state = {
            "model": denoiser.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "generator": generator.get_state(),
            "step": step,
            "losses": losses,
            "window": window,
            "settings": repr(settings),
            "seed": seed,
            "fingerprint": fingerprint,
            "attempts": attempts(resume_path),
        }
        if ema is not None:
            state["ema"] = ema.state_dict()
        atomic_torch_save(state, resume_path)

    if compute is not None:
        denoiser.compute = compute
    model = distributed.wrap(denoiser, ranks, device)
    model = compute.compiled(model) if compute is not None else model
    local_rows = ranks.rows(settings.batch_size) if ranks.distributed else None

    denoiser.train()
    last_save = time.monotonic()
    bar = tqdm(
        range(start, settings.steps),
        initial=start,
        total=settings.steps,
        desc="M-step",
        disable=not progress or not ranks.main,
        mininterval=5,
    )
    with preemption.deferred():  # a stop signal waits for the end of the step
        for step in bar:
            index = torch.randint(
                data.shape[0], (settings.batch_size,), generator=generator, device=device
            )
            batch = data[index]
            cond = None if condition is None else condition[index]
            if settings.augment is not None:
                batch, cond = _augment(settings.augment, batch, cond, generator)
            loss = denoising_loss(
                model, batch, schedule, generator, cond, local_rows, settings.t_law
            )
            # the global loss and whether any rank got a stop signal, the same on every rank: all
            # ranks stop at the same step
            stop = loss.new_tensor(float(preemption.requested()))
            value, stop = ranks.mean(torch.stack([loss.detach(), stop])).tolist()
            if not math.isfinite(value):
                raise FloatingPointError(f"training loss is {value} at step {step}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if settings.clip:
                nn.utils.clip_grad_norm_(denoiser.parameters(), settings.clip)
            optimizer.step()
            scheduler.step()
            if ema is not None:
                ema.update_parameters(denoiser)
            window.append(value)
            if len(window) == log_every:
                losses.append(sum(window) / len(window))
                window = []
                bar.set_postfix(loss=f"{losses[-1]:.4f}")
            if resume_path is not None and time.monotonic() - last_save > settings.resume_every_s:
                if ranks.main:  # the state is the same on every rank
                    save_state(step + 1)
                last_save = time.monotonic()
            if stop and step + 1 < settings.steps:
                _stop(ranks, step + 1, settings.steps, resume_path, save_state)
    if window:
        losses.append(sum(window) / len(window))
    weights = ema.module.state_dict() if ema is not None else denoiser.state_dict()
    return {k: v.detach().cpu().clone() for k, v in weights.items()}, losses

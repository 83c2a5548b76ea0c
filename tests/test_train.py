from dataclasses import replace

import pytest
import torch

import empriors.train as train_module
from empriors.diffusion import Denoiser, VESchedule
from empriors.nn import MLPBackbone
from empriors.train import TrainSettings, train_denoiser


def _data(g):
    return torch.randn(512, 3, generator=g) * torch.tensor([1.0, 0.5, 0.1])


def _net():
    torch.manual_seed(0)
    return Denoiser(MLPBackbone(3, (32, 32), 8))


SETTINGS = TrainSettings(
    steps=60, batch_size=32, lr=1e-3, lr_end=1e-5, clip=1.0, ema=0.9, resume_every_s=0.0
)


def test_training_reduces_loss(g):
    _, losses = train_denoiser(
        _net(), _data(g), VESchedule(1e-3, 10), SETTINGS, seed=1, progress=False
    )
    assert losses[-1] < losses[0]


def test_resume_after_crash_gives_identical_weights(tmp_path, g, monkeypatch):
    data, schedule = _data(g), VESchedule(1e-3, 10)
    reference, ref_losses = train_denoiser(_net(), data, schedule, SETTINGS, seed=7, progress=False)

    real_loss, calls = train_module.denoising_loss, []

    def crashing_loss(*args):
        calls.append(1)
        if len(calls) == 25:
            raise KeyboardInterrupt("simulated kill")
        return real_loss(*args)

    resume = tmp_path / "state.pt"
    monkeypatch.setattr(train_module, "denoising_loss", crashing_loss)
    with pytest.raises(KeyboardInterrupt):
        train_denoiser(_net(), data, schedule, SETTINGS, seed=7, resume_path=resume, progress=False)
    monkeypatch.setattr(train_module, "denoising_loss", real_loss)
    assert torch.load(resume, weights_only=True)["step"] == 24

    resumed, losses = train_denoiser(
        _net(), data, schedule, SETTINGS, seed=7, resume_path=resume, progress=False
    )
    for k in reference:
        assert torch.equal(reference[k], resumed[k]), k
    assert losses == ref_losses


def test_resume_state_from_other_settings_is_ignored(tmp_path, g):
    data, schedule = _data(g), VESchedule(1e-3, 10)
    resume = tmp_path / "state.pt"
    train_denoiser(_net(), data, schedule, SETTINGS, seed=7, resume_path=resume, progress=False)
    other = TrainSettings(**{**SETTINGS.__dict__, "lr": 5e-4})
    fresh, _ = train_denoiser(_net(), data, schedule, other, seed=7, progress=False)
    from_state, _ = train_denoiser(
        _net(), data, schedule, other, seed=7, resume_path=resume, progress=False
    )
    for k in fresh:
        assert torch.equal(fresh[k], from_state[k])


def test_nan_loss_raises(g):
    data = _data(g)
    data[0, 0] = float("nan")
    with pytest.raises(FloatingPointError):
        train_denoiser(
            _net(),
            data.repeat(1, 1),
            VESchedule(1e-3, 10),
            TrainSettings(steps=200, batch_size=512, lr=1e-3),
            seed=0,
            progress=False,
        )


def test_augment_flips_and_shifts_whole_images(g):
    from empriors.train import Augment

    img = torch.arange(2 * 3 * 5 * 6, dtype=torch.float32).reshape(2, -1)
    flipped = Augment((3, 5, 6), hflip=True, shift=0)(img.repeat(64, 1), g).reshape(-1, 3, 5, 6)
    plain = img.reshape(2, 3, 5, 6).repeat(64, 1, 1, 1)
    is_flip = (flipped == plain.flip(-1)).flatten(1).all(1)
    is_same = (flipped == plain).flatten(1).all(1)
    assert (is_flip | is_same).all() and 30 < is_flip.sum() < 98  # about half flipped
    shifted = Augment((3, 5, 6), hflip=False, shift=1)(img, g).reshape(2, 3, 5, 6)
    padded = torch.nn.functional.pad(img.reshape(2, 3, 5, 6), (1, 1, 1, 1), mode="reflect")
    windows = [padded[:, :, i : i + 5, j : j + 6] for i in range(3) for j in range(3)]
    for b in range(2):  # each image is one of the 9 reflect-padded windows, all channels alike
        assert any(torch.equal(shifted[b], w[b]) for w in windows)


def test_resume_state_from_other_data_or_start_is_ignored(tmp_path, g):
    """A stale state with the same settings and seed, left by a run on other E-step samples
    (or from other initial weights), is not continued: the result equals a fresh run."""
    data, schedule = _data(g), VESchedule(1e-3, 10)
    resume = tmp_path / "state.pt"
    train_denoiser(_net(), data, schedule, SETTINGS, seed=7, resume_path=resume, progress=False)
    other_data = data + 0.01
    fresh, _ = train_denoiser(_net(), other_data, schedule, SETTINGS, seed=7, progress=False)
    from_state, _ = train_denoiser(
        _net(), other_data, schedule, SETTINGS, seed=7, resume_path=resume, progress=False
    )
    for k in fresh:
        assert torch.equal(fresh[k], from_state[k])

    def shifted_start():
        net = _net()
        with torch.no_grad():
            net.backbone.net[0].bias.fill_(0.1)
        return net

    fresh, _ = train_denoiser(shifted_start(), data, schedule, SETTINGS, seed=7, progress=False)
    from_state, _ = train_denoiser(
        shifted_start(), data, schedule, SETTINGS, seed=7, resume_path=resume, progress=False
    )
    for k in fresh:
        assert torch.equal(fresh[k], from_state[k])


def test_warmup_ema_follows_its_decay_rule():
    """d_n = min(decay, (1 + n) / (10 + n)): after the first update (a copy) the average moves
    by 1 - 2/11 towards the weights, and a long run uses the configured decay."""
    avg, cur = [torch.zeros(3)], [torch.ones(3)]
    train_module.warmup_ema(0.999)(avg, cur, torch.tensor(1))
    assert torch.allclose(avg[0], torch.full((3,), 9 / 11))
    avg = [torch.zeros(3)]
    train_module.warmup_ema(0.999)(avg, cur, torch.tensor(10**6))
    assert torch.allclose(avg[0], torch.full((3,), 1e-3))


def test_warmup_ema_forgets_the_first_weights(g):
    """A run's saved EMA weights against its raw end weights: with the warmup, the share of the
    early weights is gone, so the EMA lies closer to the end of the run (fixed decay 0.99 over
    60 steps keeps 0.99^60 = 55% of the first step's weights)."""
    data, schedule = _data(g), VESchedule(1e-3, 10)
    raw, _ = train_denoiser(_net(), data, schedule, replace(SETTINGS, ema=None), 1, progress=False)
    gaps = {}
    for warm in (False, True):
        s = replace(SETTINGS, ema=0.99, ema_warmup=warm)
        ema, _ = train_denoiser(_net(), data, schedule, s, 1, progress=False)
        gaps[warm] = sum((ema[k] - raw[k]).square().sum() for k in raw).sqrt()
    assert gaps[True] < 0.5 * gaps[False]

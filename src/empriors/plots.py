"""Every figure, drawn with matplotlib (Agg) into results/{exp}/figures/."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from torch import Tensor  # noqa: E402


def _save(fig, path: Path):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    fig.savefig(tmp, dpi=120, bbox_inches="tight")
    plt.close(fig)
    tmp.replace(path)


def sinkhorn_curve(rows: list[dict], path: Path) -> None:
    """The paper's Sinkhorn figure S and the debiased divergence against EM iteration."""
    k = [r["iteration"] for r in rows]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(k, [r["sinkhorn"] for r in rows], "o-", label="S = OT(u1,v) - OT(u1,u2) (paper)")
    ax.plot(
        k, [r["sinkhorn_divergence"] for r in rows], "s--", label="debiased Sinkhorn divergence"
    )
    ax.set_xlabel("EM iteration k (0 = Gaussian q0)")
    ax.set_ylabel("Sinkhorn")
    values = [r[key] for r in rows for key in ("sinkhorn", "sinkhorn_divergence")]
    if min(values) > 0:
        ax.set_yscale("log")
    else:  # S can dip below 0 (it subtracts OT(u1, u2)) once the model is as good as data
        ax.set_yscale("symlog", linthresh=1e-2)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)


def marginals(truth: Tensor, models: dict[int, Tensor], path: Path, max_points: int = 4096) -> None:
    """Paper Fig. 3: 2-d marginals (x_i, x_j), i < j, of the model at chosen iterations
    (columns) over the truth (grey); 1-d marginal histograms of the first coordinate below."""
    truth = truth[:max_points].numpy()
    n = truth.shape[1]
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    iterations = sorted(models)
    fig, axes = plt.subplots(
        len(pairs) + 1,
        len(iterations),
        figsize=(1.8 * len(iterations), 1.8 * (len(pairs) + 1)),
        squeeze=False,
    )
    for c, k in enumerate(iterations):
        x = models[k][:max_points].numpy()
        for r, (i, j) in enumerate(pairs):
            ax = axes[r, c]
            ax.scatter(truth[:, i], truth[:, j], s=0.5, c="0.75", rasterized=True)
            ax.scatter(x[:, i], x[:, j], s=0.5, c="C0", alpha=0.5, rasterized=True)
            ax.set_xlim(-3, 3)
            ax.set_ylim(-3, 3)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(f"x{i + 1} vs x{j + 1}", fontsize=7)
        ax = axes[-1, c]
        bins = np.linspace(-3, 3, 61)
        ax.hist(truth[:, 0], bins=bins, density=True, color="0.6", label="truth")
        ax.hist(x[:, 0], bins=bins, density=True, histtype="step", color="C0", label="model")
        ax.set_yticks([])
        axes[0, c].set_title(f"k = {k}" + (" (q0)" if k == 0 else ""), fontsize=9)
    axes[-1, 0].legend(fontsize=6)
    axes[-1, 0].set_ylabel("x1 density", fontsize=7)
    _save(fig, path)


def heuristic_study(summary: list[dict], path: Path) -> None:
    """Paper Fig. 2: Sinkhorn divergence between q(x_t | y) and p(x_t | y) against sigma_t,
    median over seeds with the 25-75% band, one line per heuristic for V[x | x_t]."""
    fig, ax = plt.subplots(figsize=(5, 3.4))
    labels = {
        "zeros": "0 (DPS-like)",
        "sigma_t": "Sigma_t",
        "cov_x": "cov_x",
        "tweedie": "Tweedie (MMPS)",
    }
    for i, h in enumerate(labels):
        rows = sorted((r for r in summary if r["heuristic"] == h), key=lambda r: r["sigma_t"])
        if not rows:
            continue
        s = [r["sigma_t"] for r in rows]
        lo = [max(r["q25"], 1e-12) for r in rows]
        hi = [max(r["q75"], 1e-12) for r in rows]
        ax.plot(
            s, [max(r["median"], 1e-12) for r in rows], "o-", ms=3, color=f"C{i}", label=labels[h]
        )
        ax.fill_between(s, lo, hi, color=f"C{i}", alpha=0.2)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("sigma_t")
    ax.set_ylabel("Sinkhorn divergence to p(x_t | y)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    _save(fig, path)


def _to_display(x: Tensor, shape: tuple[int, int, int]) -> np.ndarray:
    """Flat signals in [-2, 2] -> (N, H, W) grey or (N, H, W, 3) colour in [0, 1]."""
    img = ((x.reshape(-1, *shape).float() + 2) / 4).clamp(0, 1).numpy()
    return img[:, 0] if shape[0] == 1 else img.transpose(0, 2, 3, 1)


def _show(ax, image: np.ndarray, title: str | None = None):
    ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=7)


def metric_curve(rows: list[dict], metric: str, path: Path) -> None:
    """Paper Fig. 4: the image metric (FID, or the named offline metric) against iteration."""
    k = [r["iteration"] for r in rows]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(k, [r[metric] for r in rows], "o-")
    ax.set_xlabel("EM iteration k (0 = Gaussian q0)")
    ax.set_ylabel(metric)
    if min(r[metric] for r in rows) > 0:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    _save(fig, path)


def sample_grids(
    samples: dict[int, Tensor], shape: tuple[int, int, int], path: Path, per_row: int = 8
) -> None:
    """Prior samples, one row per iteration (rows labelled k)."""
    iterations = sorted(samples)
    fig, axes = plt.subplots(
        len(iterations),
        per_row,
        figsize=(0.9 * per_row, 0.95 * len(iterations)),
        squeeze=False,
    )
    for r, k in enumerate(iterations):
        images = _to_display(samples[k][:per_row], shape)
        for c in range(per_row):
            _show(axes[r, c], images[c] if c < len(images) else np.ones(images.shape[1:]))
        axes[r, 0].set_ylabel(f"k = {k}", fontsize=8)
    _save(fig, path)


def posterior_examples(
    observed: Tensor,
    missing: Tensor | None,
    posterior: Tensor,
    truth: Tensor,
    shape: tuple[int, int, int],
    path: Path,
    observed_title: str = "observation",
) -> None:
    """One row per observation: the observation as an image (missing pixels in red for
    masks; the zero-filled reconstruction for k-space), the posterior samples, the truth.
    observed (E, D), missing (E, D) bool or None, posterior (E, P, D), truth (E, D)."""
    e, p = posterior.shape[:2]
    fig, axes = plt.subplots(e, p + 2, figsize=(1.0 * (p + 2), 1.05 * e), squeeze=False)
    obs_img = _to_display(observed, shape)
    if missing is not None:
        holes = _to_display(missing.float() * 4 - 2, shape)
        holes = holes if holes.ndim == 3 else holes[..., 0]
        rgb = obs_img if obs_img.ndim == 4 else np.repeat(obs_img[..., None], 3, axis=-1)
        rgb = rgb.copy()
        rgb[holes > 0.5] = (0.85, 0.1, 0.1)
        obs_img = rgb
    truth_img = _to_display(truth, shape)
    for i in range(e):
        _show(axes[i, 0], obs_img[i], observed_title if i == 0 else None)
        samples = _to_display(posterior[i], shape)
        for j in range(p):
            _show(axes[i, j + 1], samples[j], f"sample {j + 1}" if i == 0 else None)
        _show(axes[i, -1], truth_img[i], "truth" if i == 0 else None)
    _save(fig, path)

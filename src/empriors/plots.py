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

"""Every figure, drawn with matplotlib (Agg) into results/{exp}/figures/."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from torch import Tensor  # noqa: E402

from empriors.data.io import atomic_path  # noqa: E402


def _save(fig, path: Path):
    with atomic_path(path, suffix=Path(path).suffix) as tmp:  # savefig reads the suffix
        fig.savefig(tmp, dpi=120, bbox_inches="tight")
    plt.close(fig)


def _laps_and_final(rows: list[dict]) -> tuple[list[dict], dict | None]:
    """Rows of laps 0..K, and DiffEM's ``final`` row (None for the other methods)."""
    laps = [r for r in rows if r["iteration"] != "final"]
    final = next((r for r in rows if r["iteration"] == "final"), None)
    return laps, final


def _final_marker(ax, laps: list[dict], final: dict | None, key: str, colour="C3") -> None:
    """DiffEM's final unconditional prior as a star just right of the last lap."""
    if final is not None:
        x = laps[-1]["iteration"] + 0.3
        ax.plot([x], [final[key]], "*", ms=11, color=colour, label=f"final prior ({key})")


PAPER_CURVES = (
    ("paper_sinkhorn", "^-", "reference's S on posterior samples (stopThr 1e-3, floored)"),
    ("paper_exact", "d-.", "the same S, exact OT"),
    ("paper_debiased", "v:", "debiased divergence on the same samples (converged)"),
)


def sinkhorn_curve(rows: list[dict], path: Path) -> None:
    """The paper's Sinkhorn figure S and the debiased divergence against EM iteration; with
    ``paper_*`` columns (evaluate.paper_metric), the reference's curve and its checks too."""
    rows, final = _laps_and_final(rows)
    k = [r["iteration"] for r in rows]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(k, [r["sinkhorn"] for r in rows], "o-", label="S = OT(u1,v) - OT(u1,u2) (paper)")
    ax.plot(
        k, [r["sinkhorn_divergence"] for r in rows], "s--", label="debiased Sinkhorn divergence"
    )
    keys = ["sinkhorn", "sinkhorn_divergence"]
    if rows and "paper_sinkhorn" in rows[0]:  # evaluate.paper_metric: the reference's curve
        for key, style, label in PAPER_CURVES:
            ax.plot(k, [r[key] for r in rows], style, label=label)
            keys.append(key)
    _final_marker(ax, rows, final, "sinkhorn")
    ax.set_xlabel("EM iteration k (0 = Gaussian q0)")
    ax.set_ylabel("Sinkhorn")
    values = [r[key] for r in rows for key in keys if r[key] == r[key]]  # NaN: not computed
    values += [final["sinkhorn"]] if final else []
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


HEURISTIC_LABELS = {
    "zeros": "0 (DPS-like)",
    "sigma_t": "Sigma_t",
    "cov_x": "cov_x",
    "tweedie": "Tweedie (MMPS)",
}


def heuristic_study(summary: list[dict], path: Path) -> None:
    """Paper Fig. 2: Sinkhorn divergence between q(x_t | y) and p(x_t | y) against sigma_t,
    median over seeds with the 25-75% band, one line per heuristic for V[x | x_t]."""
    fig, ax = plt.subplots(figsize=(5, 3.4))
    _heuristic_panel(ax, summary, "Sinkhorn divergence to p(x_t | y)")
    _save(fig, path)


def heuristic_study_paper(rows: list[dict], path: Path) -> None:
    """The reference's study, three panels against sigma_t (median and 25-75% band over
    seeds): its S = max(OT(u1, v) - OT(u1, u2), 1e-6) (Fig. 2's metric), the exact OT
    difference W2^2(u1, v) - W2^2(u1, u2) (floored at 1e-6 for the log axis: below it, the
    approximation is within the two true sets' sampling noise), and the converged debiased
    Sinkhorn divergence between u1 and v."""
    panels = {
        "divergence": "reference S (unconverged, floored)",
        "exact": "exact OT difference",
        "converged_divergence": "converged debiased divergence",
    }
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    for ax, (metric, title) in zip(axes, panels.items(), strict=True):
        summary = []
        for (sigma, h), values in _group(rows, metric).items():
            q = np.quantile(np.maximum(values, 1e-6), [0.25, 0.5, 0.75])
            summary.append(
                {"sigma_t": sigma, "heuristic": h, "q25": q[0], "median": q[1], "q75": q[2]}
            )
        _heuristic_panel(ax, summary, title)
    _save(fig, path)


def _group(rows: list[dict], metric: str) -> dict[tuple, list[float]]:
    out: dict[tuple, list[float]] = {}
    for r in rows:
        out.setdefault((r["sigma_t"], r["heuristic"]), []).append(r[metric])
    return out


def _heuristic_panel(ax, summary: list[dict], ylabel: str) -> None:
    labels = HEURISTIC_LABELS
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
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


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


def metric_curve(
    rows: list[dict], metric: str, path: Path, accelerations: list[float] = ()
) -> None:
    """Paper Fig. 4: the image metric (FID, or the named offline metric) against iteration.
    With ``accelerations`` (MRI), a second panel: PSNR of the posterior reconstructions of
    held-out slices per r (single samples, and dotted the mean of the samples), each r's
    zero-filled baseline dashed in the same colour. DiffEM's final prior: a star."""
    rows, final = _laps_and_final(rows)
    k = [r["iteration"] for r in rows]
    panels = 2 if accelerations else 1
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 3.2), squeeze=False)
    ax = axes[0, 0]
    ax.plot(k, [r[metric] for r in rows], "o-")
    _final_marker(ax, rows, final, metric)
    ax.set_xlabel("EM iteration k (0 = Gaussian q0)")
    ax.set_ylabel(metric)
    if min(r[metric] for r in rows) > 0 and (final is None or final[metric] > 0):
        ax.set_yscale("log")
    if final is not None:
        ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    if accelerations:
        from empriors.metrics.reconstruction import acceleration_label

        ax = axes[0, 1]
        for i, acc in enumerate(accelerations):
            label, colour = acceleration_label(acc), f"C{i}"
            ax.plot(k, [r[f"psnr_{label}"] for r in rows], "o-", color=colour, label=f"r={acc:g}")
            ax.plot(k, [r[f"psnr_mean_{label}"] for r in rows], ":", color=colour)
            ax.axhline(rows[0][f"psnr_zf_{label}"], color=colour, ls="--", lw=0.8)
        ax.set_xlabel("EM iteration k (0 = Gaussian q0)")
        ax.set_ylabel("PSNR (dB)")
        ax.set_title("held-out: samples (o-), mean of samples (:), zero-filled (--)", fontsize=8)
        ax.legend(fontsize=7, ncol=2)
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


def mri_reconstructions(
    recs: list, truth: Tensor, shape: tuple[int, int, int], path: Path, example: int = 0
) -> None:
    """The MRI paper's Fig. 6 layout for one held-out slice: one row per acceleration r with
    the k-space column mask, the zero-filled inverse, two posterior samples and the truth.
    ``recs``: :class:`empriors.metrics.reconstruction.Reconstructions` per r; truth (N, H W)."""
    h, w = shape[1:]
    shown = min(2, recs[0].samples.shape[1])
    columns = ["mask", "zero-filled", *(f"sample {j + 1}" for j in range(shown)), "truth"]
    fig, axes = plt.subplots(
        len(recs), len(columns), figsize=(1.0 * len(columns), 1.05 * len(recs)), squeeze=False
    )
    truth_img = _to_display(truth[example : example + 1], shape)[0]
    for i, rec in enumerate(recs):
        mask = np.broadcast_to(rec.masks[example].float().numpy()[None, :], (h, w))
        samples = _to_display(rec.samples[example, :shown], shape)
        images = [mask, _to_display(rec.zero_filled[example : example + 1], shape)[0]]
        images += [samples[j] for j in range(samples.shape[0])] + [truth_img]
        for j, image in enumerate(images):
            _show(axes[i, j], image, columns[j] if i == 0 else None)
        axes[i, 0].set_ylabel(f"r = {rec.acceleration:g}", fontsize=8)
    _save(fig, path)


def method_comparison(rows: list[dict], name: str, path: Path) -> None:
    """Methods side by side on one experiment: the metric per iteration (a line per method,
    DiffEM's final prior a star) and the cumulative compute hours of the iterations."""
    fig, (ax, cost) = plt.subplots(1, 2, figsize=(10, 3.4))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    metric = rows[0]["metric"]
    for i, method in enumerate(methods):
        mine = [r for r in rows if r["method"] == method]
        laps, final = _laps_and_final(mine)
        k = [int(r["iteration"]) for r in laps]
        colour = f"C{i}"
        ax.plot(k, [r["value"] for r in laps], "o-", color=colour, label=method)
        if final is not None:
            ax.plot([k[-1] + 0.3], [final["value"]], "*", ms=12, color=colour,
                    label=f"{method}: final prior")  # fmt: skip
        hours = np.cumsum([r["job_hours"] for r in mine])
        ticks = k + ([k[-1] + 0.3] if final is not None else [])
        cost.plot(ticks, hours, "o-", color=colour, label=method)
    ax.set_xlabel("iteration k (0 = Gaussian q0)")
    ax.set_ylabel(metric)
    if all(r["value"] > 0 for r in rows):
        ax.set_yscale("log")
    ax.set_title(f"{name}: {metric} per iteration", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    cost.set_xlabel("iteration k")
    cost.set_ylabel("cumulative job hours")
    cost.set_title("compute (E-step shards + M-step jobs)", fontsize=9)
    cost.grid(alpha=0.3)
    _save(fig, path)


def diagnostics(rows: list[dict], metric: str, correlation: dict, path: Path) -> None:
    """The label-free diagnostics per lap (posterior-predictive SW2, E-step residual over
    sigma_y^2, sample change between laps, CG's final relative residual) beside the clean
    metric, with their Spearman rank correlations with it in the titles."""
    from matplotlib.ticker import MaxNLocator

    names = {
        "predictive": "predictive SW2 in y space",
        "residual": "E-step residual / sigma_y^2",
        "change": "E-step sample change",
        "cg_residual": "E-step CG relative residual",
    }
    fig, axes = plt.subplots(1, 5, figsize=(20, 3.6), layout="constrained")
    laps = [r["iteration"] for r in rows]
    series = [(metric, f"clean metric: {metric}\n(needs clean data)", "k")] + [
        (key, f"{title}\nSpearman with the metric {correlation[key]:+.2f}", None)
        for key, title in names.items()
    ]
    for ax, (key, title, color) in zip(axes, series, strict=True):
        values = [float(r[key]) for r in rows]
        ax.plot(laps, values, "o-", ms=3, color=color)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("lap")
        positive = [v for v in values if np.isfinite(v) and v > 0]
        if positive and max(positive) > 10 * min(positive):  # log only across decades
            ax.set_yscale("log")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    _save(fig, path)

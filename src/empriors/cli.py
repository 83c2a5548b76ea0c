"""``python -m empriors STAGE ...``: one subcommand per workflow stage, plus ``lineage``, ``diff``.

Every stage reads its inputs, checks them, computes, and writes its outputs atomically with
provenance. The workflow passes each experiment's resolved config block as JSON (--config).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import sys
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from empriors import distributed, methods, preemption
from empriors.config import (
    ConfigError,
    ExperimentSettings,
    parse_json_config,
    validate_study,
)
from empriors.data.images import load_image_data
from empriors.data.io import (
    ArtifactError,
    atomic_path,
    lineage,
    load_checkpoint,
    now,
    provenance,
    read_h5,
    save_checkpoint,
    write_h5,
)
from empriors.data.manifold import manifold_dataset
from empriors.gaussian import LowRankGaussian
from empriors.methods import em_mmps
from empriors.methods.prior import Prior, build_denoiser
from empriors.metrics.fid import image_metric
from empriors.metrics.sinkhorn import entropic_ot
from empriors.operators import (
    PixelMask,
    observe,
    operator_from_parameters,
)
from empriors.resume import BatchResume, attempts, fingerprint
from empriors.seeding import derive_seed, generator

log = logging.getLogger("empriors")


# --------------------------------------------------------------------------- helpers


def _plots():
    """The figures module, imported by the stages that draw (matplotlib costs every other
    stage job half a second of import)."""
    from empriors import plots

    return plots


def _seed_name(args) -> str:
    """The name random draws derive from: the experiment's, or its ``seed_name`` (experiments
    compared side by side draw the same data, observations and q0)."""
    return parse_json_config(args.config).get("seed_name") or args.exp


def _settings(args) -> ExperimentSettings:
    s = ExperimentSettings(
        args.exp,
        parse_json_config(args.config),
        args.seed,
        args.device,
        args.precision,
        args.compile,
    )
    s.compute.apply_backend_flags()
    return s


def _provenance(
    stage: str, s: ExperimentSettings, inputs, seed: int, started: str, resume=None
) -> dict:
    """The provenance of a stage's artifact: its config sections, how the networks ran
    (precision, compile) and, for a data-parallel M-step, the number of processes. ``resume``:
    the job's resume state (a path or a :class:`BatchResume`), whose attempts it lists (where
    each began, when and on which host: more than one after a kill or preemption)."""
    config = {**s.raw, "compute": {**s.compute.record(), "processes": s.ranks.world}}
    prov = provenance(stage, config, inputs, seed, started)
    if resume is not None and (tried := attempts(getattr(resume, "path", resume))):
        prov["attempts"] = tried
    return prov


OPERATOR_KEYS = {
    "projection": ("matrices",),
    "pixel_mask": ("masks",),
    "gaussian_blur": ("shape", "kernel_size", "std"),
    "kspace_columns": ("masks", "shape"),
}


def _load_observations(path: str | Path):
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
    return y, op, int(attrs["dim"]), shape


def _save_prior(path, prior: Prior, extra: dict, prov: dict):
    payload = {"gaussian": prior.gaussian.state_dict(), "features": prior.gaussian.dim, **extra}
    if prior.network is not None:
        payload["network"] = prior.network.state_dict()
        payload["network_condition"] = prior.network.condition_features
    if prior.flow is not None:  # FlowDiff: the flow with the sizes that rebuild it
        payload["flow"] = prior.flow.state_dict()
        payload["flow_transforms"] = prior.flow.transforms
        payload["flow_hidden"] = list(prior.flow.hidden)
    save_checkpoint(path, payload, prov)


def _load_prior(path, settings: ExperimentSettings, dim: int | None = None) -> Prior:
    """The prior saved at ``path``; ``dim``: the signal dimension it must have (the
    observations')."""
    state = load_checkpoint(path)
    for key in ("gaussian", "features"):
        if key not in state:
            raise ArtifactError(f"{path} is not a prior checkpoint (no {key!r})")
    gaussian = LowRankGaussian.from_state_dict(state["gaussian"])
    if dim is not None and gaussian.dim != dim:
        raise ArtifactError(
            f"{path}: a prior of dimension {gaussian.dim}, but the observations' signals have "
            f"dimension {dim} (a prior of another experiment?)"
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


def _boolean(value: str) -> bool:
    if value.lower() not in ("true", "false"):
        raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")
    return value.lower() == "true"


def _iteration(value: str) -> int | str:
    """--iteration: a lap number, or ``final`` (DiffEM's final unconditional prior)."""
    if value == "final":
        return value
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"iteration must be an integer or 'final': {value!r}"
        ) from None


def _iteration_order(iteration: int | str) -> tuple[int, int]:
    """Sort key: laps in order, ``final`` last."""
    return (1, 0) if iteration == "final" else (0, int(iteration))


def _samples_by_iteration(paths) -> dict[int, torch.Tensor]:
    """{iteration: samples x} of sample files that record their iteration."""
    out = {}
    for p in paths:
        arrays, attrs = read_h5(p, ["x"])
        out[int(attrs["iteration"])] = arrays["x"]
    return out


def _shard_slice(n: int, shard: int, shards: int) -> slice:
    if not 0 <= shard < shards:
        raise ValueError(f"shard {shard} out of range for {shards} shards")
    return slice(shard * n // shards, (shard + 1) * n // shards)


# --------------------------------------------------------------------------- stages


def cmd_corrupt(args):
    started, s = now(), _settings(args)
    data, obs = s.section("data"), s.section("observation")
    if data["kind"] in ("fastmri", "phantoms"):
        return _corrupt_mri(args, data, obs, started)
    if data["kind"] != "manifold":
        return _corrupt_images(args, data, obs, started)
    if obs["kind"] != "projection":
        raise ConfigError("the manifold data is observed by projections (observation.kind)")
    seed = derive_seed(args.seed, _seed_name(args), "data")
    g = generator(seed)
    train, u1, u2 = manifold_dataset(
        data["n_train"],
        data["n_eval"],
        data["dim"],
        data["manifold_dim"],
        data["alpha"],
        data["eps"],
        g,
    )
    op = s.random_operator(train.shape[0], data["dim"], None, g)
    y = observe(train, op, obs["sigma_y"], g)
    prov = provenance("corrupt", {"data": data, "observation": obs}, [], seed, started)
    write_h5(args.truth, {"train": train, "eval_u1": u1, "eval_u2": u2}, prov)
    write_h5(
        args.observations,
        {"y": y, "operator/matrices": op.matrices},
        prov,
        {"operator": "projection", "dim": data["dim"], "sigma_y": obs["sigma_y"]},
    )
    log.info("wrote %d observations of dimension %s", y.shape[0], tuple(y.shape[1:]))


def _corrupt_images(args, data: dict, obs: dict, started: str):
    """Images: y = A x + e with shared-channel pixel masks or a Gaussian blur; truth.h5
    holds the clean images (read only by evaluation)."""
    x, shape = load_image_data(data)
    seed = derive_seed(args.seed, _seed_name(args), "data")
    g = generator(seed)
    if obs["kind"] not in ("pixel_mask", "gaussian_blur"):
        raise ConfigError(f"images are observed by pixel_mask or gaussian_blur, not {obs['kind']}")
    op = _settings(args).random_operator(x.shape[0], x.shape[1], shape, g)
    y = observe(x, op, obs["sigma_y"], g)
    inputs = [data["archive"]] if "archive" in data else []
    prov = provenance("corrupt", {"data": data, "observation": obs}, inputs, seed, started)
    write_h5(args.truth, {"train": x}, prov, {"shape": list(shape)})
    write_h5(
        args.observations,
        {"y": y, **{f"operator/{k}": v for k, v in op.parameters().items()}},
        prov,
        {
            "operator": obs["kind"],
            "dim": x.shape[1],
            "shape": list(shape),
            "sigma_y": obs["sigma_y"],
        },
    )
    log.info("wrote %d observations of %s images (%s)", y.shape[0], shape, obs["kind"])


def cmd_phantoms(args):
    """Phantom knee volumes in the fastMRI format (the MRI demo's data) into data.folder."""
    from empriors.data.phantoms import write_phantom_dataset

    s = _settings(args)
    data = s.section("data")
    if data["kind"] != "phantoms":
        raise ConfigError("the phantoms stage needs data.kind: phantoms")
    g = generator(derive_seed(args.seed, _seed_name(args), "phantoms"))
    size = data["size"]
    if size[0] != size[1]:
        raise ConfigError(f"phantoms are square; data.size is {size}")
    kspace = data.get("kspace")
    paths = write_phantom_dataset(
        Path(args.out), data["volumes"], size[0], data["volume_slices"], g, kspace and tuple(kspace)
    )
    log.info("wrote %d phantom volumes to %s", len(paths), args.out)


def _corrupt_mri(args, data: dict, obs: dict, started: str):
    """MRI: real fastMRI files (or phantoms in their format) from data.folder, the last
    ``validation_volumes`` volumes held out as clean validation slices; training slices are
    observed as y = M_i fft2c(x_i) + e with the paper's random column masks."""
    from empriors.data.fastmri import MRIDataError, load_slices

    if obs["kind"] != "kspace_columns":
        raise ConfigError("MRI data is observed by kspace_columns (observation.kind)")
    folder = Path(data["folder"])
    if not folder.is_dir():
        raise MRIDataError(
            f"{folder}: the data folder does not exist; place the knee single-coil fastMRI "
            "files there (never downloaded at run time)"
        )
    files = sorted(folder.glob("*.h5"))
    held = data["validation_volumes"]
    if len(files) <= held:
        raise MRIDataError(
            f"{folder}: {len(files)} fastMRI .h5 file(s), need more than validation_volumes="
            f"{held}; place the knee single-coil files there (never downloaded at run time)"
        )
    first, last = data["slices"]
    size = tuple(data["size"])
    x, _ = load_slices(files[:-held], first, last, size)
    x_val, _ = load_slices(files[-held:], first, last, size)
    seed = derive_seed(args.seed, _seed_name(args), "data")
    g = generator(seed)
    op = _settings(args).random_operator(x.shape[0], x.shape[1], (1, *size), g)
    y = observe(x, op, obs["sigma_y"], g)
    inputs = [str(f) for f in files] if data["kind"] == "fastmri" else []
    prov = provenance("corrupt", {"data": data, "observation": obs}, inputs, seed, started)
    shape = [1, *size]
    write_h5(args.truth, {"train": x, "val": x_val}, prov, {"shape": shape})
    write_h5(
        args.observations,
        {"y": y, **{f"operator/{k}": v for k, v in op.parameters().items()}},
        prov,
        {
            "operator": "kspace_columns",
            "dim": x.shape[1],
            "shape": shape,
            "sigma_y": obs["sigma_y"],
        },
    )
    log.info(
        "wrote %d k-space observations (r = %s), %d held-out slices",
        y.shape[0],
        obs["acceleration"],
        x_val.shape[0],
    )


def cmd_init_prior(args):
    started, s = now(), _settings(args)
    y, op, dim, _ = _load_observations(args.observations)
    n_fit = s.init["n_fit"]
    if n_fit is not None:
        y, op = y[:n_fit], op[:n_fit]
    seed = derive_seed(args.seed, _seed_name(args), "init")
    gaussian, history = em_mmps.fit_initial_gaussian(op, y, dim, s, generator(seed))
    prov = _provenance(
        "init_prior",
        s,
        [args.observations],
        seed,
        started,
    )
    _save_prior(
        args.out, em_mmps.Prior(gaussian), {"iteration": 0, "history": json.dumps(history)}, prov
    )


def _estep_samples(s: ExperimentSettings, prior, op, y: torch.Tensor, rows, seed: int, resume=None):
    """One posterior sample per entry of ``rows`` (observation indices, repeats allowed),
    with the E-step's settings: the flow (FlowDiff), the conditional network (DiffEM) or the
    configured posterior sampler under the prior (EM-MMPS, and every method's lap 1)."""
    return methods.posterior_samples(prior, op[rows], y[rows], s, seed, resume)


def _sampling_resume(args, s: ExperimentSettings, name: str, seed: int) -> BatchResume:
    """The resume file of a sampling job: ``--resume-dir`` (default: the experiment's
    ``.resume/``, beside the M-step's states, outside every versioned folder), made from
    its inputs (the prior and, if given, the observations), config, seed and precision."""
    folder = Path(args.resume_dir or Path(args.prior).parent.parent / ".resume")
    inputs = [args.prior] + ([args.observations] if getattr(args, "observations", None) else [])
    key = fingerprint(inputs, stage=name, config=s.raw, seed=seed, compute=s.compute.record())
    return BatchResume(folder / f"{name}.pt", key)


def cmd_estep(args):
    started, s = now(), _settings(args)
    y, op, dim, _ = _load_observations(args.observations)
    index = _shard_slice(y.shape[0], args.shard, s.shards)
    rows = torch.arange(y.shape[0])[index].repeat_interleave(s.samples_per_observation)
    prior = _load_prior(args.prior, s, dim)
    seed = derive_seed(args.seed, _seed_name(args), "estep", args.iteration, args.shard)
    resume = _sampling_resume(args, s, f"estep_{args.iteration}_{args.shard}", seed)
    t0 = time.perf_counter()
    x = _estep_samples(s, prior, op, y, rows, seed, resume)
    if not torch.isfinite(x).all():
        raise FloatingPointError("E-step produced NaN/Inf samples; nothing written")
    log.info(
        "E-step shard %d: %d samples in %.1f s", args.shard, x.shape[0], time.perf_counter() - t0
    )
    prov = _provenance("estep", s, [args.prior, args.observations], seed, started, resume)
    write_h5(
        args.out,
        {"x": x, "index": rows},
        prov,
        {"iteration": args.iteration, "shard": args.shard},
    )
    resume.clear()


def cmd_mstep(args):
    distributed.launch(args.processes, ["-m", "empriors", *args.argv])
    started, s = now(), _settings(args)
    # torchrun's processes (mstep.gpus > 1): join the group and take this rank's GPU first
    s.ranks, s.device = distributed.from_environment(s.device)
    if s.ranks.distributed and s.method == "flowdiff":
        raise ConfigError("FlowDiff's M-step runs as one process (mstep.gpus must be 1)")
    shards = [read_h5(p, ["x"])[0]["x"] for p in args.samples]
    x = torch.cat(shards)
    kept = em_mmps.keep_in_range(x, s.keep_range)
    log.info(
        "M-step %d: %d samples, %d kept inside the range", args.iteration, x.shape[0], kept.shape[0]
    )
    if kept.shape[0] < 2:
        raise ArtifactError("fewer than 2 E-step samples left after the range filter")
    previous = _load_prior(args.prior, s)
    seed = derive_seed(args.seed, _seed_name(args), "mstep", args.iteration)
    resume = Path(args.resume_dir) / f"iter_{args.iteration}.pt"
    observations = None
    if s.method != "em_mmps":
        y, op, _, shape = _load_observations(args.observations)
        observations = (op, y, shape)
    prior, losses = methods.m_step(kept, previous, s, seed, resume, observations)
    if s.ranks.main:  # the weights are the same on every rank; one writes them
        inputs = [*args.samples, args.prior] + ([args.observations] if observations else [])
        prov = _provenance("mstep", s, inputs, seed, started, resume)
        _save_prior(
            args.out,
            prior,
            {"iteration": args.iteration, **losses, "kept": kept.shape[0], "method": s.method},
            prov,
        )
        resume.unlink(missing_ok=True)
    distributed.finish(s.ranks)


def cmd_final_prior(args):
    """DiffEM: the prior evaluation samples, a fresh unconditional denoiser trained on the last
    lap's reconstructions (all shards)."""
    from empriors.methods import diffem

    started, s = now(), _settings(args)
    x = torch.cat([read_h5(p, ["x"])[0]["x"] for p in args.samples])
    kept = em_mmps.keep_in_range(x, s.keep_range)
    seed = derive_seed(args.seed, _seed_name(args), "final_prior")
    resume = Path(args.resume_dir) / "final.pt"
    prior, losses = diffem.final_prior(kept, s, seed, resume)
    prov = _provenance("final_prior", s, list(args.samples), seed, started, resume)
    payload = {"iteration": "final", "losses": torch.tensor(losses, dtype=torch.float64)}
    _save_prior(args.out, prior, {**payload, "kept": kept.shape[0]}, prov)
    resume.unlink(missing_ok=True)


def _conditional_inputs(args, prior: Prior, rows: torch.Tensor):
    """(op, y) of observation ``rows`` (cycled) when the prior is DiffEM's conditional model
    (its evaluation samples reconstruct observations); None otherwise."""
    if not prior.conditional:
        return None
    if not args.observations:
        raise ConfigError("evaluating a conditional (DiffEM) model needs --observations")
    y, op, _, _ = _load_observations(args.observations)
    rows = rows % y.shape[0]
    return op[rows], y[rows]


def cmd_eval_reference(args):
    started, s = now(), _settings(args)
    arrays, _ = read_h5(args.truth, ["eval_u1", "eval_u2"])
    n = s.evaluate["n_samples"]
    u1, u2 = arrays["eval_u1"][:n], arrays["eval_u2"][:n]
    reg, its = s.evaluate["sinkhorn_reg"], s.evaluate["sinkhorn_iterations"]
    result = {
        "ot_u1_u2": entropic_ot(u1, u2, reg, its),
        "ot_u1_u1": entropic_ot(u1, u1, reg, its),
        "n": u1.shape[0],
        "reg": reg,
        "iterations": its,
    }
    result["provenance"] = provenance("eval_reference", s.raw, [args.truth], None, started)
    _write_json(args.out, result)


def cmd_evaluate(args):
    started, s = now(), _settings(args)
    arrays, _ = read_h5(args.truth, ["eval_u1"])
    u1 = arrays["eval_u1"][: s.evaluate["n_samples"]]
    reference = json.loads(Path(args.reference).read_text())
    prior = _load_prior(args.prior, s)
    seed = derive_seed(args.seed, _seed_name(args), "evaluate", args.iteration)
    n = s.evaluate["n_samples"]
    observations = _conditional_inputs(args, prior, torch.arange(n))
    v = methods.model_samples(
        prior, n, s.eval_sampler, s.evaluate["batch_size"], s, seed, observations
    )
    if not torch.isfinite(v).all():
        raise FloatingPointError(f"model samples of {args.prior} contain NaN/Inf")
    reg, its = s.evaluate["sinkhorn_reg"], s.evaluate["sinkhorn_iterations"]
    ot_u1_v, ot_v_v = entropic_ot(u1, v, reg, its), entropic_ot(v, v, reg, its)
    result = {
        "iteration": args.iteration,
        "sinkhorn": ot_u1_v - reference["ot_u1_u2"],
        "sinkhorn_divergence": ot_u1_v - 0.5 * (reference["ot_u1_u1"] + ot_v_v),
        "ot_u1_v": ot_u1_v,
        "n": v.shape[0],
        "reg": reg,
    }
    log.info("iteration %d: %s", args.iteration, result)
    prov = _provenance("evaluate", s, [args.prior, args.truth, args.reference], seed, started)
    write_h5(args.samples_out, {"x": v}, prov, {"iteration": args.iteration})
    _write_json(args.out, {**result, "provenance": prov})


def cmd_aggregate(args):
    rows = []
    for path in args.evals:
        r = json.loads(Path(path).read_text())
        rows.append({k: r[k] for k in ("iteration", "sinkhorn", "sinkhorn_divergence", "ot_u1_v")})
    rows.sort(key=lambda r: _iteration_order(r["iteration"]))
    figures = Path(args.figures_dir)
    figures.mkdir(parents=True, exist_ok=True)
    _plots().sinkhorn_curve(rows, figures / "sinkhorn.png")
    truth = read_h5(args.truth, ["eval_u1"])[0]["eval_u1"]
    _plots().marginals(
        truth, _samples_by_iteration(args.marginal_samples), figures / "marginals.png"
    )
    _write_csv(args.out, rows)  # last: the CSV is the rule's completion marker


# --------------------------------------------------------------------------- image evaluation


def cmd_sample_prior(args):
    """One shard of the evaluation samples of iteration k (images: sharded like the E-step)."""
    started, s = now(), _settings(args)
    ev = s.evaluate
    index = _shard_slice(ev["n_samples"], args.shard, ev["shards"])
    n = index.stop - index.start
    prior = _load_prior(args.prior, s)
    seed = derive_seed(args.seed, _seed_name(args), "sample_prior", args.iteration, args.shard)
    observations = _conditional_inputs(args, prior, torch.arange(index.start, index.stop))
    resume = _sampling_resume(args, s, f"sample_prior_{args.iteration}_{args.shard}", seed)
    x = methods.model_samples(
        prior, n, s.eval_sampler, ev["batch_size"], s, seed, observations, resume
    )
    if not torch.isfinite(x).all():
        raise FloatingPointError(f"samples of {args.prior} contain NaN/Inf; nothing written")
    prov = _provenance("sample_prior", s, [args.prior], seed, started, resume)
    write_h5(args.out, {"x": x}, prov, {"iteration": args.iteration, "shard": args.shard})
    resume.clear()


def cmd_evaluate_images(args):
    """The image metric of iteration k: samples (all shards) against the clean images."""
    started, s = now(), _settings(args)
    ev = s.evaluate
    reference = ev.get("reference", "train")
    truth, attrs = read_h5(args.truth, [reference])
    shape = tuple(int(v) for v in attrs["shape"])
    samples = torch.cat([read_h5(p, ["x"])[0]["x"] for p in args.samples])
    weights = Path(ev["inception_weights"]) if "inception_weights" in ev else None
    scores = image_metric(ev["metric"], samples, truth[reference], shape, weights)
    result = {"iteration": args.iteration, **scores, "n": samples.shape[0]}
    log.info("iteration %d: %s", args.iteration, result)
    prov = provenance("evaluate_images", s.raw, [*args.samples, args.truth], None, started)
    _write_json(args.out, {**result, "metric": ev["metric"], "provenance": prov})


def cmd_aggregate_images(args):
    """fid.csv (the metric per iteration, named columns), the metric curve and sample grids."""
    from empriors.metrics import reconstruction

    evals = [json.loads(Path(p).read_text()) for p in args.evals]
    metric = evals[0]["metric"]
    columns = ["fd_pixels"] if metric == "fd_pixels" else ["fid", "is", "is_std", "fd_pixels"]
    rows = sorted(
        ({"iteration": r["iteration"], **{c: r[c] for c in columns}} for r in evals),
        key=lambda r: _iteration_order(r["iteration"]),
    )
    shape = tuple(int(v) for v in read_h5(args.truth, [])[1]["shape"])
    figures = Path(args.figures_dir)
    accelerations = []
    if args.reconstructions:
        recs = [json.loads(Path(p).read_text()) for p in args.reconstructions]
        recs = {r["iteration"]: r for r in recs}
        covered = [r["iteration"] for r in rows if r["iteration"] != "final"]
        if sorted(recs) != covered:
            raise ArtifactError(f"reconstructions of iterations {sorted(recs)}, evals {covered}")
        accelerations = recs[covered[0]]["accelerations"]
        scores = reconstruction.score_columns(accelerations)
        for r in rows:
            r.update({c: recs.get(r["iteration"], {}).get(c, "") for c in scores})
    _plots().metric_curve(rows, columns[0], figures / "metric_curve.png", accelerations)
    _plots().sample_grids(_samples_by_iteration(args.grid_samples), shape, figures / "samples.png")
    _write_csv(args.out, rows)  # last: the CSV is the rule's completion marker


def cmd_reconstruct(args):
    """MRI: posterior reconstructions of held-out slices at every evaluation acceleration by
    q_k, PSNR/SSIM against the truth and the zero-filled baseline; Fig. 6 of iteration k."""
    from empriors.metrics import reconstruction

    started, s = now(), _settings(args)
    ev = s.evaluate
    truth_all, attrs = read_h5(args.truth, ["val"])
    shape = tuple(int(v) for v in attrs["shape"])
    val = truth_all["val"]
    count = min(ev["reconstructions"], val.shape[0])
    truth = val[torch.linspace(0, val.shape[0] - 1, count).round().long()]
    prior = _load_prior(args.prior, s)
    seed = derive_seed(args.seed, _seed_name(args), "reconstruct")
    # Fig. 6's sampler (the reference: 64 steps, 5 CG iterations) where it differs from the E-step
    own = {
        "steps": ev.get("reconstruction_steps"),
        "cg_maxiter": ev.get("reconstruction_cg_maxiter"),
    }
    s_rec = s.with_section("estep", **{k: v for k, v in own.items() if v is not None})

    def posterior(op, y, r):
        label = reconstruction.acceleration_label(r)
        rows = torch.arange(y.shape[0])
        return _estep_samples(s_rec, prior, op, y, rows, derive_seed(seed, args.iteration, label))

    recs = reconstruction.reconstruct_held_out(
        truth,
        shape[1:],
        ev["accelerations"],
        s.section("observation")["sigma_y"],
        ev["posterior_samples"],
        posterior,
        seed,
    )
    if not all(torch.isfinite(r.samples).all() for r in recs):
        raise FloatingPointError(f"reconstructions by {args.prior} contain NaN/Inf")
    scores = reconstruction.scores(recs, truth, shape[1:])
    log.info("iteration %d: %s", args.iteration, scores)
    prov = _provenance("reconstruct", s, [args.prior, args.truth], seed, started)
    tensors = {"truth": truth}
    for r in recs:
        label = reconstruction.acceleration_label(r.acceleration)
        tensors |= {f"{label}/masks": r.masks, f"{label}/zero_filled": r.zero_filled}
        tensors[f"{label}/samples"] = r.samples
    write_h5(args.samples_out, tensors, prov, {"iteration": args.iteration, "shape": shape})
    _plots().mri_reconstructions(recs, truth, shape, Path(args.figure))
    result = {"iteration": args.iteration, "accelerations": ev["accelerations"], **scores}
    _write_json(args.out, {**result, "provenance": prov})


def cmd_posterior_examples(args):
    """Figure: observations, several posterior samples each (the last prior), truth."""
    s = _settings(args)
    y, op, dim, shape = _load_observations(args.observations)
    truth = read_h5(args.truth, ["train"])[0]["train"]
    e, p = s.evaluate["examples"], 4
    index = torch.arange(e)
    prior = _load_prior(args.prior, s, dim)
    seed = derive_seed(args.seed, _seed_name(args), "posterior_examples")
    x = _estep_samples(s, prior, op, y, index.repeat_interleave(p), seed)
    missing = (op.masks[index] == 0) if isinstance(op, PixelMask) else None
    _plots().posterior_examples(
        op[index].preview(y[index]),
        missing,
        x.reshape(e, p, -1),
        truth[index],
        shape,
        Path(args.out),
        op.preview_title,
    )
    log.info("posterior examples of %d observations from %s", e, args.prior)


# the study's variants: ours, and the reference code's procedure (studies/heuristics_paper.py)
HEURISTIC_VARIANTS = ("heuristics", "heuristics_paper")


def _heuristics_one_seed(variant: str, cfg: dict, g: torch.Generator, device: str) -> list[dict]:
    from empriors.studies.heuristics import study_one_seed
    from empriors.studies.heuristics_paper import paper_study_one_seed

    common = (g, cfg["sigma_t"], cfg["components"], cfg["std"], cfg["sigma_y"], cfg["n_prior"])
    if variant == "heuristics":
        return study_one_seed(*common, cfg["support"], cfg["sinkhorn_reg"], device=device)
    return paper_study_one_seed(
        *common,
        cfg["n_eval"],
        cfg["sinkhorn_reg"],
        cfg["sinkhorn_iterations"],
        cfg["sinkhorn_stop"],
        cfg["floor"],
        cfg["exact_points"],
        device=device,
    )


def cmd_heuristics_part(args):
    started, cfg = now(), parse_json_config(args.config)
    validate_study(args.variant, cfg)
    rows = []
    first = args.part * cfg["seeds_per_job"]
    for seed in tqdm(range(first, min(first + cfg["seeds_per_job"], cfg["seeds"])), "seeds"):
        # the `heuristics` stream for both variants: seed k's prior is the same mixture
        g = generator(derive_seed(args.seed, "heuristics", seed))
        t0 = time.perf_counter()
        rows += [
            {"seed": seed, **r} for r in _heuristics_one_seed(args.variant, cfg, g, args.device)
        ]
        log.info("%s: seed %d done in %.1f s", args.variant, seed, time.perf_counter() - t0)
    prov = provenance(f"{args.variant}_part", cfg, [], args.seed, started)
    _write_json(args.out, {"rows": rows, "provenance": prov})


def cmd_heuristics_aggregate(args):
    from empriors.studies.heuristics import summarize
    from empriors.studies.heuristics_paper import summarize_paper

    first = ("seed", "sigma_t", "heuristic")
    rows = [
        {k: r[k] for k in first} | {k: v for k, v in r.items() if k not in first}
        for p in args.parts
        for r in json.loads(Path(p).read_text())["rows"]
    ]
    rows.sort(key=lambda r: (r["seed"], r["sigma_t"], r["heuristic"]))
    _write_csv(args.out, rows)
    if args.variant == "heuristics":
        summary = summarize(rows)
        _write_csv(args.summary, summary)
        _plots().heuristic_study(summary, Path(args.figure))
        return
    _write_csv(args.summary, summarize_paper(rows))
    _plots().heuristic_study_paper(rows, Path(args.figure))


def cmd_benchmark_task(args):
    from empriors.studies.posterior_benchmark import run_task

    started, cfg = now(), parse_json_config(args.config)
    validate_study("posterior_benchmark", cfg)
    if args.task not in cfg["tasks"]:
        raise ConfigError(
            f"task {args.task!r} is not configured; configured: {sorted(cfg['tasks'])}"
        )
    g = generator(derive_seed(args.seed, "posterior_benchmark", args.task))
    rows = run_task(args.task, cfg["tasks"][args.task], cfg, g)
    prov = provenance("benchmark_task", cfg, [], args.seed, started)
    _write_json(args.out, {"rows": rows, "provenance": prov})


def cmd_benchmark_table(args):
    fields = (
        "task",
        "sampler",
        "solver_iterations",
        "steps",
        "sinkhorn",
        "sinkhorn_floor",
        "mean_rmse",
        "psnr",
        "ms_per_step",
        "peak_mb",
    )
    rows = [
        {k: r[k] for k in fields}
        for p in args.tasks
        for r in json.loads(Path(p).read_text())["rows"]
    ]
    _write_csv(args.out, rows)
    lines = [
        "| task | sampler | solver it. | steps | Sinkhorn (floor) | mean RMSE | PSNR | ms/step |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['task']} | {r['sampler']} | {r['solver_iterations']} | {r['steps']} "
            f"| {r['sinkhorn']:.3g} ({r['sinkhorn_floor']:.2g}) | {r['mean_rmse']:.3f} "
            f"| {r['psnr']:.1f} | {r['ms_per_step']:.1f} |"
        )
    Path(args.markdown).write_text("\n".join(lines) + "\n")


def cmd_compare(args):
    """results/compare/NAME.csv: every method's metric and cost per iteration, and a figure
    with a line per method."""
    from empriors.studies.compare import method_rows

    if not len(args.experiments) == len(args.methods) == len(args.metrics):
        raise ValueError("compare needs one method and one metric CSV per experiment")
    rows = []
    for exp, method, path in zip(args.experiments, args.methods, args.metrics, strict=True):
        rows += method_rows(exp, method, Path(path), args.device != "cpu")
    _plots().method_comparison(rows, args.name, Path(args.figure))
    if args.claims:
        from empriors.studies import claims

        with atomic_path(args.claims) as tmp:
            tmp.write_text(claims.markdown(claims.method_claims(rows, args.out)))
    _write_csv(args.out, rows)


def _estep_rows(paths) -> tuple[torch.Tensor, torch.Tensor]:
    """The E-step samples x (n, d) of all shards and their observation indices (n,)."""
    arrays = [read_h5(p, ["x", "index"])[0] for p in paths]
    return torch.cat([a["x"] for a in arrays]), torch.cat([a["index"] for a in arrays]).long()


def cmd_diagnose(args):
    """Label-free diagnostics of lap k (empriors.metrics.diagnostics): the posterior-predictive
    distance of q_k's evaluation samples, the E-step residual and the change of the E-step
    samples from lap k - 1. Reads no clean data."""
    from empriors.metrics import diagnostics

    started, s = now(), _settings(args)
    y, op, _, _ = _load_observations(args.observations)
    sigma_y = s.section("observation")["sigma_y"]
    x = torch.cat([read_h5(p, ["x"])[0]["x"] for p in args.samples])
    n = min(x.shape[0], y.shape[0])
    g = generator(derive_seed(args.seed, _seed_name(args), "diagnose", args.iteration))
    first = torch.arange(n)
    result = {
        "iteration": args.iteration,
        "predictive": diagnostics.predictive_distance(y[first], op[first], x[:n], sigma_y, g),
        "residual": float("nan"),
        "change": float("nan"),
    }
    if args.estep:
        xe, index = _estep_rows(args.estep)
        result["residual"] = diagnostics.residual_ratio(y[index], op[index], xe, sigma_y)
        if args.previous:
            xp, previous = _estep_rows(args.previous)
            if not torch.equal(index, previous):
                raise ArtifactError("E-step samples of consecutive laps index other observations")
            result["change"] = diagnostics.sample_change(xe, xp)
    log.info("iteration %d: %s", args.iteration, result)
    inputs = [args.observations, *args.samples, *(args.estep or []), *(args.previous or [])]
    prov = provenance("diagnose", s.raw, inputs, args.seed, started)
    _write_json(args.out, {**result, "provenance": prov})


def _read_laps(paths) -> list[dict]:
    """Per-lap diagnostics JSONs (results/{exp}/diagnostics/iter_k.json), in lap order."""
    return sorted((json.loads(Path(p).read_text()) for p in paths), key=lambda r: r["iteration"])


def _read_csv(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def cmd_diagnostics_aggregate(args):
    """diagnostics.csv (one row per lap: the label-free diagnostics beside the clean metric),
    their Spearman rank correlations with the clean metric over the laps, and the figure."""
    from empriors.metrics.diagnostics import spearman

    laps = _read_laps(args.diagnostics)
    metric_rows = {r["iteration"]: r for r in _read_csv(args.metric)}
    column = next(
        c for c in ("sinkhorn", "fid", "fd_pixels") if c in next(iter(metric_rows.values()))
    )
    rows = [
        {
            "iteration": r["iteration"],
            "predictive": r["predictive"],
            "residual": r["residual"],
            "change": r["change"],
            column: float(metric_rows[str(r["iteration"])][column]),
        }
        for r in laps
    ]
    names = ("predictive", "residual", "change")
    correlation = {d: spearman([r[d] for r in rows], [r[column] for r in rows]) for d in names}
    log.info("Spearman rank correlation with %s over laps: %s", column, correlation)
    _plots().diagnostics(rows, column, correlation, Path(args.figure))
    spearman_json = {d: (None if math.isnan(v) else v) for d, v in correlation.items()}
    _write_json(args.correlation, {"metric": column, "spearman": spearman_json, "laps": len(rows)})
    _write_csv(args.out, rows)


def cmd_stop_check(args):
    """em.stop_when after lap k: whether EM stops here (the Snakemake checkpoint stop_check
    reads the answer), from the diagnostics of laps 0..k."""
    from empriors.metrics.diagnostics import stop_decision

    rule = parse_json_config(args.rule)
    laps = _read_laps(args.diagnostics)
    values = [float(r[rule["diagnostic"]]) for r in laps]
    stop, reason = stop_decision(values, rule["rel_change"], rule["window"])
    k = laps[-1]["iteration"]
    log.info("lap %d: %s %s (%s)", k, "stop" if stop else "continue", rule["diagnostic"], reason)
    _write_json(args.out, {"iteration": k, "stop": stop, "reason": reason, "rule": rule})


def cmd_final(args):
    """final.json: which prior is the experiment's final one (the last lap, the lap
    em.stop_when chose, or DiffEM's iter_final)."""
    _write_json(args.out, {"prior": args.prior, "iteration": args.iteration, "reason": args.reason})


def cmd_claims(args):
    """results/claims.{csv,md}: the papers' qualitative claims checked on this run's tables
    (empriors.studies.claims; the comparisons' claims: ``compare --claims``)."""
    from empriors.studies import claims

    read = _read_csv
    rows = []
    for path in args.manifold or []:
        rows += claims.manifold_monotone(read(path), path)
    if args.heuristics:
        rows += claims.tweedie_closest(read(args.heuristics), args.heuristics)
    if args.heuristics_paper:
        path = args.heuristics_paper
        rows += claims.tweedie_closest(read(path), path, "median_divergence")
        rows += claims.tweedie_closest(
            read(path), path + " (converged divergence)", "median_converged_divergence"
        )
    if args.benchmark:
        rows += claims.sampler_ranking(read(args.benchmark), args.benchmark)
    for path in args.compare or []:
        rows += claims.method_claims(read(path), path)
    if not rows:
        raise ValueError("claims: no result table given")
    _write_csv(args.out, rows)
    with atomic_path(args.markdown) as tmp:
        tmp.write_text(claims.markdown(rows))
    print(claims.markdown(rows), end="")


def cmd_lineage(args):
    for line in lineage(args.file):
        print(line)


def cmd_diff(args) -> int:
    from empriors.rundiff import run_differences

    try:
        differences = run_differences(args.a, args.b)
    except FileNotFoundError as e:
        raise ArtifactError(str(e)) from e
    for line in differences:
        print(line)
    if differences:
        print(f"{len(differences)} difference(s) in content", file=sys.stderr)
        return 1
    print(f"same content: {args.a} and {args.b} (ignoring provenance times, hosts, attempts; "
          "timing columns; DVC hashes; logs/)")  # fmt: skip
    return 0


def cmd_parity(args) -> int:
    from empriors import parity

    table = parity.load_yaml(args.table)
    problems = parity.differences(table, parity.load_yaml(args.config))
    for line in problems:
        print(line)
    if args.markdown:
        with atomic_path(args.markdown) as tmp:
            tmp.write_text(parity.markdown(table))
    if problems:
        print(f"{len(problems)} departure(s) from {args.table}", file=sys.stderr)
        return 1
    print(f"{args.config} is in parity with {args.table}")
    return 0


def _write_csv(path, rows: list[dict]):
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def _write_json(path, obj):
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True))


# --------------------------------------------------------------------------- parser

RESUME_HELP = "where finished batches are saved for a rerun (default: EXPERIMENT/.resume)"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m empriors", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    def stage(name, fn, help_):
        sp = sub.add_parser(name, help=help_)
        sp.add_argument("--exp", required=True, help="experiment name (a key of experiments:)")
        sp.add_argument("--config", required=True, help="the experiment's config block as JSON")
        sp.add_argument("--seed", type=int, required=True, help="the config's global seed")
        sp.add_argument("--device", default="auto", help="auto | cpu | cuda")
        sp.add_argument("--threads", type=int, default=None, help="torch CPU threads")
        sp.add_argument(
            "--precision", default="auto", help="auto | fp32 | tf32 | bf16 (the networks')"
        )
        sp.add_argument(
            "--compile", type=_boolean, default=False, help="true | false: torch.compile"
        )
        sp.set_defaults(fn=fn)
        return sp

    sp = stage("corrupt", cmd_corrupt, "generate data and observations y = A x + e")
    sp.add_argument("--observations", required=True)
    sp.add_argument("--truth", required=True)
    sp = stage("phantoms", cmd_phantoms, "MRI demo: phantom volumes in the fastMRI format")
    sp.add_argument("--out", required=True, help="the folder to write the .h5 files into")
    sp = stage("init-prior", cmd_init_prior, "fit the Gaussian q0 by Monte-Carlo EM")
    sp.add_argument("--observations", required=True)
    sp.add_argument("--out", required=True)
    sp = stage("estep", cmd_estep, "posterior samples for one shard of the observations")
    for a in ("--prior", "--observations", "--out"):
        sp.add_argument(a, required=True)
    sp.add_argument("--iteration", type=int, required=True)
    sp.add_argument("--shard", type=int, required=True)
    sp.add_argument("--resume-dir", help=RESUME_HELP)
    sp = stage("mstep", cmd_mstep, "fit the prior of iteration k to its E-step samples")
    sp.add_argument("--samples", nargs="+", required=True)
    for a in ("--prior", "--out", "--resume-dir"):
        sp.add_argument(a, required=True)
    sp.add_argument("--observations", help="observations.h5 (DiffEM, FlowDiff)")
    sp.add_argument("--iteration", type=int, required=True)
    sp.add_argument(
        "--processes",
        type=int,
        default=1,
        help="data-parallel processes (mstep.gpus): restarts itself under torchrun",
    )
    sp = stage("final-prior", cmd_final_prior, "DiffEM: the final unconditional prior")
    sp.add_argument("--samples", nargs="+", required=True)
    for a in ("--out", "--resume-dir"):
        sp.add_argument(a, required=True)
    sp = stage("eval-reference", cmd_eval_reference, "OT terms between true sets (once)")
    sp.add_argument("--truth", required=True)
    sp.add_argument("--out", required=True)
    sp = stage("evaluate", cmd_evaluate, "sample a prior and score it against the truth")
    for a in ("--prior", "--truth", "--reference", "--out", "--samples-out"):
        sp.add_argument(a, required=True)
    sp.add_argument("--observations", help="observations.h5 (a DiffEM conditional model)")
    sp.add_argument("--iteration", type=_iteration, required=True)

    sp = stage("diagnose", cmd_diagnose, "label-free diagnostics of one lap (no clean data)")
    for a in ("--observations", "--out"):
        sp.add_argument(a, required=True)
    sp.add_argument("--samples", nargs="+", required=True, help="the lap's evaluation samples")
    sp.add_argument("--estep", nargs="*", help="the lap's E-step shards (none for q0)")
    sp.add_argument("--previous", nargs="*", help="the previous lap's E-step shards")
    sp.add_argument("--iteration", type=int, required=True)
    sp = sub.add_parser("diagnostics", help="diagnostics.csv, correlations and the figure")
    sp.add_argument("--diagnostics", nargs="+", required=True)
    for a in ("--metric", "--out", "--correlation", "--figure"):
        sp.add_argument(a, required=True)
    sp.set_defaults(fn=cmd_diagnostics_aggregate, threads=None)

    sp = stage("sample-prior", cmd_sample_prior, "images: one shard of evaluation samples")
    for a in ("--prior", "--out"):
        sp.add_argument(a, required=True)
    sp.add_argument("--observations", help="observations.h5 (a DiffEM conditional model)")
    sp.add_argument("--iteration", type=_iteration, required=True)
    sp.add_argument("--shard", type=int, required=True)
    sp.add_argument("--resume-dir", help=RESUME_HELP)
    sp = stage("evaluate-images", cmd_evaluate_images, "images: the metric of one iteration")
    sp.add_argument("--samples", nargs="+", required=True)
    for a in ("--truth", "--out"):
        sp.add_argument(a, required=True)
    sp.add_argument("--iteration", type=_iteration, required=True)
    sp = stage("posterior-examples", cmd_posterior_examples, "images: posterior samples figure")
    for a in ("--prior", "--observations", "--truth", "--out"):
        sp.add_argument(a, required=True)
    sp = stage("reconstruct", cmd_reconstruct, "MRI: held-out reconstructions, PSNR/SSIM")
    for a in ("--prior", "--truth", "--out", "--samples-out", "--figure"):
        sp.add_argument(a, required=True)
    sp.add_argument("--iteration", type=int, required=True)
    sp = sub.add_parser("aggregate-images", help="images: fid.csv, metric curve, sample grids")
    sp.add_argument("--evals", nargs="+", required=True)
    sp.add_argument("--grid-samples", nargs="+", required=True)
    sp.add_argument("--reconstructions", nargs="*", default=[], help="MRI: reconstruct JSONs")
    for a in ("--truth", "--out", "--figures-dir"):
        sp.add_argument(a, required=True)
    sp.set_defaults(fn=cmd_aggregate_images, threads=None)
    sp = sub.add_parser("aggregate", help="CSV of every iteration's scores and the figures")
    sp.add_argument("--evals", nargs="+", required=True)
    sp.add_argument("--marginal-samples", nargs="+", required=True)
    for a in ("--truth", "--out", "--figures-dir"):
        sp.add_argument(a, required=True)
    sp.set_defaults(fn=cmd_aggregate, threads=None)
    sp = sub.add_parser("heuristics-part", help="covariance study: one job's seeds")
    sp.add_argument("--config", required=True, help="the study's config block as JSON")
    sp.add_argument("--seed", type=int, required=True)
    sp.add_argument("--part", type=int, required=True)
    sp.add_argument("--out", required=True)
    sp.add_argument("--threads", type=int, default=None)
    sp.add_argument("--device", default="cpu", help="cpu or cuda")
    sp.add_argument("--variant", choices=HEURISTIC_VARIANTS, default="heuristics")
    sp.set_defaults(fn=cmd_heuristics_part)
    sp = sub.add_parser("heuristics-aggregate", help="covariance study: CSVs and figure")
    sp.add_argument("--parts", nargs="+", required=True)
    for a in ("--out", "--summary", "--figure"):
        sp.add_argument(a, required=True)
    sp.add_argument("--variant", choices=HEURISTIC_VARIANTS, default="heuristics")
    sp.set_defaults(fn=cmd_heuristics_aggregate, threads=None)
    sp = sub.add_parser("benchmark-task", help="posterior-sampling benchmark: one task")
    sp.add_argument("--config", required=True, help="the benchmark's config block as JSON")
    sp.add_argument("--seed", type=int, required=True)
    sp.add_argument("--task", required=True)
    sp.add_argument("--out", required=True)
    sp.add_argument("--threads", type=int, default=None)
    sp.set_defaults(fn=cmd_benchmark_task)
    sp = sub.add_parser("benchmark-table", help="posterior-sampling benchmark: the table")
    sp.add_argument("--tasks", nargs="+", required=True)
    sp.add_argument("--out", required=True)
    sp.add_argument("--markdown", required=True)
    sp.set_defaults(fn=cmd_benchmark_table, threads=None)
    sp = sub.add_parser("compare", help="methods side by side: metric and cost per iteration")
    sp.add_argument("--name", required=True)
    for a in ("--experiments", "--methods", "--metrics"):
        sp.add_argument(a, nargs="+", required=True)
    sp.add_argument("--device", default="cpu", help="the config's device (GPU-hours or not)")
    for a in ("--out", "--figure"):
        sp.add_argument(a, required=True)
    sp.add_argument("--claims", help="also check DiffEM's and FlowDiff's claims (markdown)")
    sp.set_defaults(fn=cmd_compare, threads=None)
    sp = sub.add_parser("stop-check", help="em.stop_when: does EM stop after this lap?")
    sp.add_argument("--rule", required=True, help="em.stop_when as JSON")
    sp.add_argument("--diagnostics", nargs="+", required=True, help="laps 0..k")
    sp.add_argument("--out", required=True)
    sp.set_defaults(fn=cmd_stop_check, threads=None)
    sp = sub.add_parser("final", help="final.json: the experiment's final prior")
    for a in ("--prior", "--reason", "--out"):
        sp.add_argument(a, required=True)
    sp.add_argument("--iteration", type=_iteration, required=True)
    sp.set_defaults(fn=cmd_final, threads=None)
    sp = sub.add_parser("claims", help="the papers' qualitative claims on this run's tables")
    sp.add_argument("--manifold", nargs="*", help="sinkhorn.csv of manifold EM runs")
    sp.add_argument("--heuristics", help="the covariance study's summary.csv")
    sp.add_argument("--heuristics-paper", help="its paper variant's summary.csv")
    sp.add_argument("--benchmark", help="the posterior benchmark's table.csv")
    sp.add_argument("--compare", nargs="*", help="results/compare/NAME.csv")
    sp.add_argument("--out", required=True)
    sp.add_argument("--markdown", required=True)
    sp.set_defaults(fn=cmd_claims, threads=None)
    sp = sub.add_parser("lineage", help="print an artifact's chain of inputs and configs")
    sp.add_argument("file")
    sp.set_defaults(fn=cmd_lineage, threads=None)
    sp = sub.add_parser(
        "diff", help="compare two runs' results (or two files) by content; exit 1 if they differ"
    )
    sp.add_argument("a", help="a results folder, e.g. results/manifold, or a file")
    sp.add_argument("b", help="the other run's folder or file")
    sp.set_defaults(fn=cmd_diff, threads=None)
    sp = sub.add_parser("parity", help="check config.yaml against the parity table")
    sp.add_argument("--table", default="config/parity.yaml")
    sp.add_argument("--config", default="config/config.yaml")
    sp.add_argument("--markdown", help="also render the table to this file (docs/parity.md)")
    sp.set_defaults(fn=cmd_parity, threads=None)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # to restart under torchrun
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.threads:
        torch.set_num_threads(args.threads)
    preemption.install()
    try:
        status = args.fn(args)
    except preemption.Preempted as e:
        # the resume state is saved: a rerun (or Snakemake's retry) continues from it. Also on
        # stdout, which the rules leave to Snakemake's log (SLURM's job log): the retry
        # overwrites the stage's log.
        for stream in (sys.stderr, sys.stdout):
            print(f"{e}; a rerun continues from there", file=stream, flush=True)
        return preemption.EXIT_STATUS
    except (
        ConfigError,
        ArtifactError,
        FloatingPointError,
        ValueError,
        OSError,  # a missing file or folder, a disk that is full or read-only: named by it
        distributed.DistributedError,
    ) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    log.info("%s: %s", args.command, peak_memory())
    return status or 0


def peak_memory() -> str:
    """The process's peak resident memory (and the GPU's peak allocation where CUDA ran):
    the last line of every stage's log, for sizing cluster jobs."""
    import resource

    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    line = f"peak memory {rss_mib:.0f} MiB RSS"
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        line += f", {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB CUDA"
    return line

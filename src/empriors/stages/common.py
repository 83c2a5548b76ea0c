"""What every stage does alike: settings from its arguments, the seed stream name,
provenance, the resume file of a sampling job, shards, and the peak-memory log line."""

from __future__ import annotations

import errno
import tempfile
from pathlib import Path

import torch

from empriors import methods
from empriors.config import ConfigError, ExperimentSettings, parse_json_config
from empriors.data.io import ArtifactError, provenance
from empriors.methods.prior import Prior
from empriors.resume import BatchResume, attempts, fingerprint
from empriors.stages.artifacts import load_observations


def plots():
    """The figures module, imported by the stages that draw (matplotlib costs every other
    stage job half a second of import)."""
    from empriors import plots

    return plots


def seed_name(args) -> str:
    """The name random draws derive from: the experiment's, or its ``seed_name`` (experiments
    compared side by side draw the same data, observations and q0)."""
    return parse_json_config(args.config).get("seed_name") or args.exp


def settings_from_args(args) -> ExperimentSettings:
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


def stage_provenance(
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


def shard_slice(n: int, shard: int, shards: int) -> slice:
    """Rows [shard n / shards, (shard + 1) n / shards) of n; an empty shard is an error (more
    shards than rows: config validation refuses it where n is known in advance)."""
    if not 0 <= shard < shards:
        raise ValueError(f"shard {shard} out of range for {shards} shards")
    if shards > n:
        raise ConfigError(f"{shards} shards of {n} rows: each shard needs at least one row")
    return slice(shard * n // shards, (shard + 1) * n // shards)


def sampling_resume(args, s: ExperimentSettings, name: str, seed: int) -> BatchResume:
    """The resume file of a sampling job: ``--resume-dir`` (default: the experiment's
    ``.resume/``, beside the M-step's states, outside every versioned folder), made from
    its inputs (the prior and, if given, the observations), config, seed and precision."""
    folder = Path(args.resume_dir or Path(args.prior).parent.parent / ".resume")
    inputs = [args.prior] + ([args.observations] if getattr(args, "observations", None) else [])
    key = fingerprint(inputs, stage=name, config=s.raw, seed=seed, compute=s.compute.record())
    return BatchResume(folder / f"{name}.pt", key)


def estep_samples(s: ExperimentSettings, prior, op, y: torch.Tensor, rows, seed: int, resume=None):
    """One posterior sample per entry of ``rows`` (observation indices, repeats allowed),
    with the E-step's settings: the flow (FlowDiff), the conditional network (DiffEM) or the
    configured posterior sampler under the prior (EM-MMPS, and every method's lap 1)."""
    return methods.posterior_samples(prior, op[rows], y[rows], s, seed, resume)


def conditional_inputs(args, prior: Prior, rows: torch.Tensor):
    """(op, y) of observation ``rows`` (cycled) when the prior is DiffEM's conditional model
    (its evaluation samples reconstruct observations); None otherwise."""
    if not prior.conditional:
        return None
    if not args.observations:
        raise ConfigError("evaluating a conditional (DiffEM) model needs --observations")
    y, op, _, _ = load_observations(args.observations)
    rows = rows % y.shape[0]
    return op[rows], y[rows]


def peak_memory() -> str:
    """The process's peak resident memory (and the GPU's peak allocation where CUDA ran):
    the last line of every stage's log, for sizing cluster jobs."""
    import resource

    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    line = f"peak memory {rss_mib:.0f} MiB RSS"
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        line += f", {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB CUDA"
    return line


def check_writable(outputs: list[tuple[str, bool]]) -> None:
    """Refuse, before any compute, outputs that cannot be written: (path, is a folder) pairs.
    The nearest existing folder on each path must be a folder (not a regular file) in which
    a file can be created (a probe file, removed at once: permission bits, a read-only mount
    and root's immutable folders all show)."""
    for path, is_folder in outputs:
        target = Path(path)
        probe = target if is_folder else target.parent
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        if not probe.is_dir():
            raise ArtifactError(f"cannot write {target}: {probe} is a file, not a folder")
        try:
            tempfile.NamedTemporaryFile(dir=probe, prefix=".write-probe-").close()
        except OSError as e:
            if e.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise
            raise ArtifactError(
                f"cannot write {target}: {e.strerror} (is {probe} read-only?)"
            ) from None

"""The bad-input catalogue: every way a user's config, data or artifact can be wrong gives one
clear error line that names the key or file and what is wrong, leaves no partial output, and
does not stand in the way of the next correct run.

Config mistakes go through the user's own path, a Snakemake dry run of a project; file
mistakes through the stage that reads the file (``python -m empriors STAGE``, called
in-process for speed: the same ``main`` the workflow's shell runs).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import re
import shutil
import signal
import subprocess
import tarfile
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml
from workflow_support import REPO, make_project, run, snakemake

from empriors import cli
from empriors.data import cifar10, images
from empriors.data.phantoms import write_phantom_dataset
from empriors.gaussian import LowRankGaussian

EXPERIMENTS = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["experiments"]


# --------------------------------------------------------------------------- config mistakes

BAD_CONFIGS = {
    # case: (the override file's text, what the error must say)
    "mistyped key": ("experiments: {manifold: {mstep: {stepz: 3}}}", "stepz"),
    "wrong type": ('experiments: {manifold: {mstep: {steps: "many"}}}', "mstep/steps"),
    "zero steps": ("experiments: {manifold: {mstep: {steps: 0}}}", "mstep/steps"),
    "negative E-step steps": ("experiments: {manifold: {estep: {steps: -4}}}", "estep/steps"),
    "zero shards": ("experiments: {manifold: {em: {shards: 0}}}", "em/shards"),
    "more shards than observations": (
        "experiments: {manifold: {data: {n_train: 3}, em: {shards: 4}}}",
        "config error at experiments/manifold/em/shards: 4 shards but data.n_train is 3",
    ),
    "more evaluation shards than samples": (
        "experiments: {digits_mask: {evaluate: {n_samples: 2, shards: 3}}}",
        "config error at experiments/digits_mask/evaluate/shards: 3 shards",
    ),
    "reversed slice range": (
        "experiments: {mri: {data: {slices: [40, 10]}}}",
        "config error at experiments/mri/data/slices: the first slice 40 is after the last 10",
    ),
    "unknown data kind": (
        "experiments: {mri: {data: {kind: fastmrii}}}",
        "/data: kind 'fastmrii' is not one of ['manifold', 'digits', 'cifar10', 'fastmri',",
    ),
    "malformed CIFAR md5": (
        "experiments: {cifar10_mask75: {data: {md5: abc}}}",
        "/data/md5: 'abc' does not match",
    ),
    "negative sigma_y": (
        "experiments: {manifold: {observation: {sigma_y: -0.1}}}",
        # (the manifold's variants share its blocks: any of them may be named)
        "/observation/sigma_y: -0.1 is less than or equal to the minimum of 0",
    ),
    "zero sigma_y": ("experiments: {manifold: {observation: {sigma_y: 0}}}", "sigma_y"),
    "unknown method": ("experiments: {manifold: {method: emm}}", "method"),
    "unknown posterior": ("experiments: {manifold: {estep: {posterior: dpss}}}", "posterior"),
    "unknown covariance": (
        "experiments: {manifold: {estep: {covariance: tweedy}}}",
        "estep/covariance",
    ),
    # Snakemake reads --configfile files before the Snakefile runs, and its message names no
    # file (a syntax error in config/config.yaml itself is named with its line: below)
    "YAML syntax error in an override": (
        "experiments: {manifold: {mstep: {steps: 3}}",
        "Config file is not valid JSON or YAML",
    ),
}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return make_project(tmp_path_factory.mktemp("bad_configs"))


def _plan(project: Path, *configfiles: str, targets: tuple = (), check: bool = False):
    command = [*targets, "--profile", "local", "--configfile", "config/demo.yaml", *configfiles]
    command.append("-n")
    return run(snakemake(*command), project, check=check)


def _said(proc) -> str:
    return proc.stdout + proc.stderr


@pytest.mark.workflow
@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_config_is_named_before_any_job(project, case):
    text, named = BAD_CONFIGS[case]
    (project / "bad.yaml").write_text(text + "\n")
    proc = _plan(project, "bad.yaml")
    assert proc.returncode != 0, f"{case}: accepted"
    assert named in _said(proc), _said(proc)[-2000:]
    assert "Traceback" not in _said(proc), _said(proc)[-3000:]
    assert not (project / "results").exists()


@pytest.mark.workflow
def test_missing_key_unknown_experiment_and_the_next_correct_run(project, tmp_path):
    # a key removed from the config itself (an override cannot remove one)
    config = project / "config" / "config.yaml"
    original = config.read_text()
    edited = yaml.safe_load(original)
    del edited["experiments"]["manifold"]["mstep"]["lr"]  # config/demo.yaml does not set it
    config.write_text(yaml.safe_dump(edited))
    try:
        proc = _plan(project)
        # (the manifold's variants share its mstep block: any of them may be named)
        named = r"config error at experiments/manifold\w*/mstep: 'lr' is a required property"
        assert proc.returncode != 0 and re.search(named, _said(proc)), _said(proc)
    finally:
        config.write_text(original)
    config.write_text(original.replace("experiments:", "experiments: [", 1))
    try:
        proc = _plan(project)
        assert proc.returncode != 0, "a YAML syntax error was accepted"
        assert "config/config.yaml is not valid YAML at line" in _said(proc), _said(proc)
    finally:
        config.write_text(original)
    proc = _plan(project, targets=("results/nope/sinkhorn.csv",))
    assert proc.returncode != 0 and "unknown experiment 'nope'" in _said(proc), _said(proc)
    # nothing the mistakes did stands in the way: the correct config plans the demo
    assert "corrupt" in _plan(project, check=True).stdout
    assert not (project / "results").exists()


# --------------------------------------------------------------------------- file mistakes


def stage(capsys, *argv) -> tuple[int, str]:
    """``python -m empriors ARGV`` in this process: (exit status, its stderr)."""
    handlers = {s: signal.getsignal(s) for s in (signal.SIGUSR1, signal.SIGTERM)}
    try:
        status = cli.main([str(a) for a in argv])
    finally:
        for s, h in handlers.items():
            signal.signal(s, h)
    return status, capsys.readouterr().err


def _manifold_config() -> dict:
    keys = ("data", "observation", "init", "diffusion", "em", "estep", "network")
    cfg = {k: EXPERIMENTS["manifold"][k] for k in keys}
    cfg["data"] = {**cfg["data"], "n_train": 64, "n_eval": 16}
    cfg["init"] = {**cfg["init"], "rounds": 1, "steps": 4}
    cfg["em"] = {"iterations": 1, "shards": 1}
    cfg["estep"] = {**cfg["estep"], "sampler": "ddpm", "steps": 4, "batch_size": 64}
    return {"method": "em_mmps", **cfg}


COMMON = ["--exp", "manifold", "--seed", "0", "--device", "cpu", "--threads", "1"]


@pytest.fixture(scope="module")
def manifold(tmp_path_factory):
    """Good manifold inputs of an E-step: observations.h5 and iter_0/prior.pt."""
    folder = tmp_path_factory.mktemp("manifold")
    common = [*COMMON, "--config", json.dumps(_manifold_config())]
    obs, prior = folder / "observations.h5", folder / "iter_0" / "prior.pt"
    truth = folder / "truth.h5"
    assert cli.main(["corrupt", *common, "--observations", str(obs), "--truth", str(truth)]) == 0
    assert cli.main(["init-prior", *common, "--observations", str(obs), "--out", str(prior)]) == 0
    return folder


def _estep(manifold: Path, tmp_path: Path, prior=None, observations=None) -> list:
    return ["estep", *COMMON, "--config", json.dumps(_manifold_config()), "--iteration", "1",
            "--shard", "0", "--prior", prior or manifold / "iter_0" / "prior.pt",
            "--observations", observations or manifold / "observations.h5",
            "--out", tmp_path / "iter_1" / "samples_0.h5",
            "--resume-dir", tmp_path / ".resume"]  # fmt: skip


def _nan_observations(good: Path, bad: Path) -> None:
    with h5py.File(good) as f, h5py.File(bad, "w") as g:
        for key in f:
            f.copy(key, g)
        for key, value in f.attrs.items():
            g.attrs[key] = value
        y = g["y"][()]
        y[3, 0] = np.nan
        g["y"][...] = y


def _truncate(good: Path, bad: Path) -> None:
    data = good.read_bytes()
    bad.write_bytes(data[: len(data) // 2])


def _wrong_network(good: Path, bad: Path) -> None:
    state = torch.load(good, weights_only=True)
    torch.manual_seed(0)
    from empriors.config import NetworkSettings
    from empriors.diffusion import Denoiser
    from empriors.nn import build_backbone

    net = Denoiser(build_backbone(NetworkSettings("mlp", 16, hidden=(32,)), 5))
    state["network"] = net.state_dict()  # a 32-wide MLP where the config says 256 x 3
    torch.save(state, bad)


def _wrong_dimension(good: Path, bad: Path) -> None:
    state = torch.load(good, weights_only=True)
    state["gaussian"] = LowRankGaussian.standard(4).state_dict()  # 4-D for the 5-D data
    state["features"] = 4
    torch.save(state, bad)


class RunsCode:
    """A pickle whose loading would run a shell command (creating a marker file)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _code_pickle(good: Path, bad: Path) -> None:
    state = torch.load(good, weights_only=True)
    state["gaussian"] = RunsCode(bad.with_name("code_ran"))
    torch.save(state, bad, pickle_protocol=pickle.DEFAULT_PROTOCOL)


PRIOR_CASES = {
    # case: (how to spoil the prior, what the error must say besides the file)
    "truncated checkpoint": (_truncate, "cannot read checkpoint"),
    "tensors of the wrong shape": (_wrong_network, "weights do not fit the configured network"),
    "a prior of the wrong dimension": (_wrong_dimension, "dimension"),
    "a pickle that would run code": (_code_pickle, "cannot read checkpoint"),
}


def _narrow_y(good: Path, bad: Path) -> None:
    """y one entry narrower than its operators' A x (y of another run)."""
    with h5py.File(good) as f, h5py.File(bad, "w") as g:
        for key in f:
            if key != "y":
                f.copy(key, g)
        for key, value in f.attrs.items():
            g.attrs[key] = value
        g["y"] = f["y"][:, :-1]


OBSERVATION_CASES = {
    "observations with NaN": (_nan_observations, "contains NaN or Inf"),
    "truncated HDF5": (_truncate, ""),
    "y narrower than its operators": (_narrow_y, "observations y have shape (1,) each, but"),
}


@pytest.mark.parametrize("case", sorted(PRIOR_CASES))
def test_bad_prior_checkpoint_is_refused_by_name(manifold, tmp_path, capsys, case):
    spoil, said = PRIOR_CASES[case]
    bad = tmp_path / "prior.pt"
    spoil(manifold / "iter_0" / "prior.pt", bad)
    status, err = stage(capsys, *_estep(manifold, tmp_path, prior=bad))
    _refused(status, err, bad, said, tmp_path)
    assert not (tmp_path / "code_ran").exists()  # the pickle's command never ran
    _next_run_works(capsys, manifold, tmp_path)


@pytest.mark.parametrize("case", sorted(OBSERVATION_CASES))
def test_bad_observations_are_refused_by_name(manifold, tmp_path, capsys, case):
    spoil, said = OBSERVATION_CASES[case]
    bad = tmp_path / "observations.h5"
    spoil(manifold / "observations.h5", bad)
    status, err = stage(capsys, *_estep(manifold, tmp_path, observations=bad))
    _refused(status, err, bad, said, tmp_path)
    _next_run_works(capsys, manifold, tmp_path)


def _refused(status: int, err: str, bad: Path, said: str, folder: Path) -> None:
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert status == 1 and lines, err[-3000:]
    assert str(bad) in lines[0] and said in lines[0], lines[0]
    assert "Traceback" not in err
    left = [p for p in folder.rglob("*") if p.is_file() and p != bad]
    assert left == [], left  # no output, no temp file, no resume state


def _next_run_works(capsys, manifold: Path, tmp_path: Path) -> None:
    status, err = stage(capsys, *_estep(manifold, tmp_path))
    assert status == 0, err[-3000:]
    assert (tmp_path / "iter_1" / "samples_0.h5").exists()


# --------------------------------------------------------------------------- data mistakes


def _mri_config(folder: Path) -> dict:
    cfg = {k: EXPERIMENTS["mri"][k] for k in ("data", "observation", "network", "diffusion")}
    cfg["data"] = {**cfg["data"], "kind": "fastmri", "folder": str(folder), "slices": [0, 3],
                   "size": [32, 32], "validation_volumes": 1,
                   "validation_folder": None}  # one folder, its last volume held out  # fmt: skip
    return {"method": "em_mmps", **cfg}


def _corrupt_mri(capsys, folder: Path, out: Path, **data) -> tuple[int, str]:
    config = _mri_config(folder)
    config = json.dumps({**config, "data": {**config["data"], **data}})
    return stage(capsys, "corrupt", "--exp", "mri", "--seed", "0", "--device", "cpu",
                 "--config", config, "--observations", out / "observations.h5",
                 "--truth", out / "truth.h5")  # fmt: skip


def _drop_key(path: Path) -> None:
    with h5py.File(path, "a") as f:
        del f["reconstruction_rss"]


def _wrong_dtype(path: Path) -> None:
    with h5py.File(path, "a") as f:
        rss = f["reconstruction_rss"][()]
        del f["reconstruction_rss"]
        f.create_dataset("reconstruction_rss", data=rss.astype(np.float64))


def _truncate_in_place(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


MRI_FILE_CASES = {
    "truncated fastMRI file": (_truncate_in_place, ""),
    "fastMRI file without reconstruction_rss": (_drop_key, "missing key(s) ['reconstruction_rss']"),
    "fastMRI file of the wrong dtype": (_wrong_dtype, "dtype float64, expected float32"),
}


@pytest.mark.parametrize("case", sorted(MRI_FILE_CASES))
def test_bad_fastmri_file_is_refused_by_name(tmp_path, capsys, case):
    spoil, said = MRI_FILE_CASES[case]
    knee = tmp_path / "knee"
    files = write_phantom_dataset(knee, 3, 32, 4, torch.Generator().manual_seed(0))
    good = files[1].read_bytes()
    spoil(files[1])
    out = tmp_path / "results"
    status, err = _corrupt_mri(capsys, knee, out)
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert status == 1 and lines and str(files[1]) in lines[0] and said in lines[0], err[-3000:]
    assert not out.exists() or not any(out.iterdir())
    files[1].write_bytes(good)  # the file replaced: the next run works
    status, err = _corrupt_mri(capsys, knee, out)
    assert status == 0 and (out / "observations.h5").exists(), err[-3000:]


@pytest.mark.parametrize("kind", ["empty", "missing"])
def test_empty_or_missing_data_folder_says_where_to_put_the_files(tmp_path, capsys, kind):
    knee = tmp_path / "knee"
    if kind == "empty":
        knee.mkdir()
    status, err = _corrupt_mri(capsys, knee, tmp_path / "results")
    assert status == 1 and f"error: {knee}" in err, err[-3000:]
    assert ("does not exist" if kind == "missing" else "no fastMRI .h5 files") in err
    assert "never downloaded" in err and not (tmp_path / "results").exists()
    write_phantom_dataset(knee, 3, 32, 4, torch.Generator().manual_seed(0))
    assert _corrupt_mri(capsys, knee, tmp_path / "results")[0] == 0


def test_mri_split_by_folder_trains_on_train_and_validates_on_val(tmp_path, capsys):
    """Issue 19.11: with data.validation_folder, every volume of folder is observed and the
    val split's (its first validation_volumes, null: all) are the clean validation slices;
    validation_volumes null without a validation folder is refused."""
    train, val = tmp_path / "train", tmp_path / "val"
    write_phantom_dataset(train, 3, 32, 4, torch.Generator().manual_seed(0))
    write_phantom_dataset(val, 2, 32, 4, torch.Generator().manual_seed(1))
    for held, volumes in ((None, 2), (1, 1)):
        out = tmp_path / f"results_{held}"
        status, err = _corrupt_mri(
            capsys, train, out, validation_folder=str(val), validation_volumes=held
        )
        assert status == 0, err[-3000:]
        with h5py.File(out / "truth.h5") as f:
            assert f["train"].shape[0] == 3 * 4 and f["val"].shape[0] == volumes * 4
    status, err = _corrupt_mri(capsys, train, tmp_path / "r", validation_volumes=None)
    assert status == 1 and "validation_volumes: null needs data.validation_folder" in err


def _cifar_archive(path: Path, n: int = 4) -> None:
    """A small archive in the layout of cifar-10-python.tar.gz (random images)."""
    rng = np.random.default_rng(0)
    with tarfile.open(path, "w:gz") as tar:
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                     b"labels": [0] * n}  # fmt: skip
            raw = pickle.dumps(batch)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))


def test_cifar_archive_with_another_checksum_says_how_to_proceed(tmp_path, capsys, monkeypatch):
    archive = tmp_path / "data" / "cifar-10-python.tar.gz"
    archive.parent.mkdir()
    _cifar_archive(archive)
    cfg = {k: EXPERIMENTS["cifar10_mask75"][k] for k in ("data", "observation", "network",
                                                         "diffusion")}  # fmt: skip
    cfg["data"] = {**cfg["data"], "archive": str(archive), "split": "train"}
    out = tmp_path / "results"
    argv = ["corrupt", "--exp", "cifar10_mask75", "--seed", "0", "--device", "cpu",
            "--config", json.dumps({"method": "em_mmps", **cfg}),
            "--observations", out / "observations.h5", "--truth", out / "truth.h5"]  # fmt: skip
    status, err = stage(capsys, *argv)
    line = next(x for x in err.splitlines() if x.startswith("error: "))
    assert status == 1 and str(archive) in line and "expected c58f30108f718f92721af3b95e74349a"
    assert "download" in line.lower() and "md5sum" in line, line
    assert not out.exists()
    # the archive replaced by one with the expected checksum (here: this archive's own)
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    monkeypatch.setattr(images, "CIFAR10_MD5", md5)
    status, err = stage(capsys, *argv)
    assert status == 0 and (out / "observations.h5").exists(), err[-3000:]


@contextmanager
def read_only(folder: Path):
    """``folder`` made unwritable for this process: permission bits, or for root (who ignores
    them) the immutable attribute (chattr +i)."""
    if os.geteuid() != 0:
        os.chmod(folder, 0o555)
        try:
            yield
        finally:
            os.chmod(folder, 0o755)
        return
    if shutil.which("chattr") is None:
        pytest.skip("running as root without chattr: cannot make a folder read-only")
    made = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"running as root and chattr +i failed: {made.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


def test_prior_of_another_dimension_names_both_files(manifold, tmp_path, capsys):
    bad = tmp_path / "prior.pt"
    _wrong_dimension(manifold / "iter_0" / "prior.pt", bad)
    status, err = stage(capsys, *_estep(manifold, tmp_path, prior=bad))
    line = next(x for x in err.splitlines() if x.startswith("error: "))
    assert status == 1 and str(bad) in line, err[-3000:]
    assert f"signals of {manifold / 'observations.h5'} have dimension 5" in line, line
    assert "a prior of dimension 4" in line


def _no_compute(*args, **kwargs):
    raise AssertionError("the stage computed before refusing its output")


def test_unwritable_output_is_refused_before_any_compute(manifold, tmp_path, capsys, monkeypatch):
    """An output under a regular file, or in a read-only folder: one line naming the path,
    before the E-step samples anything (on a cluster: before the GPU-hours)."""
    from empriors.stages import estep

    monkeypatch.setattr(estep, "estep_samples", _no_compute)
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    argv = _estep(manifold, tmp_path)
    out = blocker / "iter_1" / "samples_0.h5"
    argv[argv.index("--out") + 1] = out
    status, err = stage(capsys, *argv)
    line = next((x for x in err.splitlines() if x.startswith("error: ")), "")
    assert status == 1 and line == f"error: cannot write {out}: {blocker} is a file, not a folder"
    assert "Traceback" not in err and blocker.read_text() == "not a folder"
    folder = tmp_path / "iter_1"
    folder.mkdir()
    with read_only(folder):
        status, err = stage(capsys, *_estep(manifold, tmp_path))
        assert list(folder.iterdir()) == []
    line = next((x for x in err.splitlines() if x.startswith("error: ")), "")
    assert status == 1 and f"cannot write {folder / 'samples_0.h5'}" in line, err[-3000:]
    assert f"is {folder} read-only?" in line


def test_missing_cifar_archive_is_one_line_with_source_and_checksum(tmp_path, capsys):
    archive = tmp_path / "data" / "cifar-10-python.tar.gz"
    argv = _cifar_corrupt(tmp_path, {"archive": str(archive)})
    status, err = stage(capsys, *argv)
    assert status == 1 and len(err.strip().splitlines()) == 1, err
    line = err.strip()
    assert line.startswith(f"error: CIFAR-10 archive not found at {archive}")
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz" in line
    assert f"`md5sum` prints {cifar10.CIFAR10_MD5}" in line
    assert not (tmp_path / "results").exists()


def _cifar_corrupt(tmp_path: Path, data: dict) -> list:
    cfg = {k: EXPERIMENTS["cifar10_mask75"][k] for k in ("data", "observation", "network",
                                                         "diffusion")}  # fmt: skip
    cfg["data"] = {**cfg["data"], "split": "train", **data}
    out = tmp_path / "results"
    return ["corrupt", "--exp", "cifar10_mask75", "--seed", "0", "--device", "cpu",
            "--config", json.dumps({"method": "em_mmps", **cfg}),
            "--observations", out / "observations.h5", "--truth", out / "truth.h5"]  # fmt: skip


def test_another_cifar_format_archive_is_used_through_data_md5(tmp_path, capsys, caplog):
    """data.md5: another CIFAR-format archive with its own checksum runs; null skips the
    check with a warning; the official checksum (absent key) still refuses it."""
    archive = tmp_path / "data" / "mine.tar.gz"
    archive.parent.mkdir()
    _cifar_archive(archive)
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    status, err = stage(capsys, *_cifar_corrupt(tmp_path, {"archive": str(archive)}))
    assert status == 1 and "set data.md5 to its checksum" in err, err[-2000:]
    status, err = stage(capsys, *_cifar_corrupt(tmp_path, {"archive": str(archive), "md5": md5}))
    assert status == 0 and (tmp_path / "results" / "observations.h5").exists(), err[-3000:]
    shutil.rmtree(tmp_path / "results")
    with caplog.at_level("WARNING"):
        status, err = stage(
            capsys, *_cifar_corrupt(tmp_path, {"archive": str(archive), "md5": None})
        )
    assert status == 0, err[-3000:]
    assert f"data.md5 is null: the checksum of {archive} is not checked" in caplog.text


def test_artifacts_are_written_with_the_umask_mode(tmp_path, capsys):
    """Results on a shared project folder are readable by the group: every artifact gets the
    mode an ordinary file gets under the umask (0664 under umask 002), not mkstemp's 0600."""
    common = [*COMMON, "--config", json.dumps(_manifold_config())]
    old = os.umask(0o002)
    try:
        obs, truth = tmp_path / "observations.h5", tmp_path / "truth.h5"
        prior = tmp_path / "iter_0" / "prior.pt"
        assert stage(capsys, "corrupt", *common, "--observations", obs, "--truth", truth)[0] == 0
        assert stage(capsys, "init-prior", *common, "--observations", obs, "--out", prior)[0] == 0
        os.umask(0o022)
        final = tmp_path / "final.json"
        assert stage(capsys, "final", "--prior", prior, "--iteration", "0", "--reason", "last",
                     "--out", final)[0] == 0  # fmt: skip
    finally:
        os.umask(old)
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in (obs, truth, prior, final)}
    assert modes == {"observations.h5": "0o664", "truth.h5": "0o664", "prior.pt": "0o664",
                     "final.json": "0o644"}, modes  # fmt: skip

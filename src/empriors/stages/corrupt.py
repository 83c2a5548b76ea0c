"""Stage ``corrupt`` (workflow/rules/corrupt.smk): the clean data x (truth.h5, read only by
evaluation) and its observations y = A x + e (observations.h5) for the manifold, images and
MRI; stage ``phantoms``: the MRI demo's phantom volumes in the fastMRI format."""

from __future__ import annotations

import logging
from pathlib import Path

from empriors.config import ConfigError, ExperimentSettings
from empriors.data.images import load_image_data
from empriors.data.io import now, provenance, write_h5
from empriors.data.manifold import manifold_dataset
from empriors.operators import observe
from empriors.seeding import derive_seed, generator
from empriors.stages.common import seed_name, settings_from_args

log = logging.getLogger("empriors")


def cmd_corrupt(args):
    started, s = now(), settings_from_args(args)
    data, obs = s.section("data"), s.section("observation")
    if data["kind"] in ("fastmri", "phantoms"):
        return _corrupt_mri(args, s, data, obs, started)
    if data["kind"] != "manifold":
        return _corrupt_images(args, s, data, obs, started)
    if obs["kind"] != "projection":
        raise ConfigError("the manifold data is observed by projections (observation.kind)")
    seed = derive_seed(args.seed, seed_name(args), "data")
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
    op = s.observation.random_operator(train.shape[0], data["dim"], None, g)
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


def _corrupt_images(args, s: ExperimentSettings, data: dict, obs: dict, started: str):
    """Images: y = A x + e with shared-channel pixel masks or a Gaussian blur; truth.h5
    holds the clean images (read only by evaluation)."""
    x, shape = load_image_data(data)
    seed = derive_seed(args.seed, seed_name(args), "data")
    g = generator(seed)
    if obs["kind"] not in ("pixel_mask", "gaussian_blur"):
        raise ConfigError(f"images are observed by pixel_mask or gaussian_blur, not {obs['kind']}")
    op = s.observation.random_operator(x.shape[0], x.shape[1], shape, g)
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

    s = settings_from_args(args)
    data = s.section("data")
    if data["kind"] != "phantoms":
        raise ConfigError("the phantoms stage needs data.kind: phantoms")
    g = generator(derive_seed(args.seed, seed_name(args), "phantoms"))
    size = data["size"]
    if size[0] != size[1]:
        raise ConfigError(f"phantoms are square; data.size is {size}")
    kspace = data.get("kspace")
    paths = write_phantom_dataset(
        Path(args.out), data["volumes"], size[0], data["volume_slices"], g, kspace and tuple(kspace)
    )
    log.info("wrote %d phantom volumes to %s", len(paths), args.out)


def _mri_files(data: dict) -> tuple[list[Path], list[Path]]:
    """The training and validation volumes: with ``validation_folder``, the train split
    (folder) and the val split (its first ``validation_volumes``, null: all), as the reference
    (experiments/fastmri/data.py, issue 19.11); without, one folder whose last
    ``validation_volumes`` volumes are held out."""
    from empriors.data.fastmri import MRIDataError

    def h5_files(folder: Path) -> list[Path]:
        if not folder.is_dir():
            raise MRIDataError(
                f"{folder}: the data folder does not exist; place the knee single-coil fastMRI "
                "files there (never downloaded at run time)"
            )
        files = sorted(folder.glob("*.h5"))
        if not files:
            raise MRIDataError(f"{folder}: no fastMRI .h5 files (never downloaded at run time)")
        return files

    files, held = h5_files(Path(data["folder"])), data["validation_volumes"]
    if data.get("validation_folder"):
        return files, h5_files(Path(data["validation_folder"]))[:held]
    if held is None:
        raise ConfigError("data.validation_volumes: null needs data.validation_folder")
    if len(files) <= held:
        raise MRIDataError(
            f"{data['folder']}: {len(files)} fastMRI .h5 file(s), need more than "
            f"validation_volumes={held}; place the knee single-coil files there (never "
            "downloaded at run time)"
        )
    return files[:-held], files[-held:]


def _corrupt_mri(args, s: ExperimentSettings, data: dict, obs: dict, started: str):
    """MRI: real fastMRI files (or phantoms in their format) from data.folder, clean
    validation slices from the val split or the folder's last volumes (:func:`_mri_files`);
    training slices are observed as y = M_i fft2c(x_i) + e with the paper's random column
    masks."""
    from empriors.data.fastmri import load_slices

    if obs["kind"] != "kspace_columns":
        raise ConfigError("MRI data is observed by kspace_columns (observation.kind)")
    train_files, val_files = _mri_files(data)
    files = train_files + val_files
    first, last = data["slices"]
    size = tuple(data["size"])
    x, _ = load_slices(train_files, first, last, size)
    x_val, _ = load_slices(val_files, first, last, size)
    seed = derive_seed(args.seed, seed_name(args), "data")
    g = generator(seed)
    op = s.observation.random_operator(x.shape[0], x.shape[1], (1, *size), g)
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

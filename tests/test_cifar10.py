"""The CIFAR-10 loader on synthetic archives in the real format (written here, tiny)."""

import io
import pickle
import tarfile

import numpy as np
import pytest
import torch

from empriors.data.cifar10 import CIFAR10_MD5, file_md5, load_cifar10


def _write_archive(path, per_batch=4, corrupt_batch=None):
    """cifar-10-batches-py/{data_batch_1..5,test_batch}, each a pickled dict of uint8 rows."""
    rng = np.random.default_rng(0)
    with tarfile.open(path, "w:gz") as tar:
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
            if name == corrupt_batch:
                data = data.astype(np.float32)
            blob = pickle.dumps({b"data": data, b"labels": list(range(per_batch))})
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return path


def test_loader_reads_every_split_and_maps_pixels(tmp_path):
    path = _write_archive(tmp_path / "cifar-10-python.tar.gz")
    md5 = file_md5(path)
    train = load_cifar10(path, "train", md5=md5)
    assert train.shape == (20, 3072) and train.dtype == torch.float32
    assert load_cifar10(path, "test", md5=md5).shape == (4, 3072)
    assert load_cifar10(path, "all", md5=md5).shape == (24, 3072)
    with tarfile.open(path) as tar:
        raw = pickle.load(tar.extractfile("cifar-10-batches-py/data_batch_1"), encoding="bytes")
    expected = torch.from_numpy(raw[b"data"]).float() * 4 / 256 - 2
    assert torch.equal(train[:4], expected)
    assert train.min() >= -2 and train.max() <= 2 - 4 / 256


def test_checksum_mismatch_is_a_clear_error(tmp_path):
    path = _write_archive(tmp_path / "cifar-10-python.tar.gz")
    with pytest.raises(ValueError, match=f"expected {CIFAR10_MD5}"):
        load_cifar10(path)  # the official checksum: a synthetic archive cannot match it


def test_missing_archive_names_the_file_and_its_source(tmp_path):
    with pytest.raises(FileNotFoundError, match="cifar-10-python.tar.gz.*kriz"):
        load_cifar10(tmp_path / "cifar-10-python.tar.gz")


def test_malformed_batch_is_rejected(tmp_path):
    path = _write_archive(tmp_path / "c.tar.gz", corrupt_batch="data_batch_3")
    with pytest.raises(ValueError, match="data_batch_3.*uint8"):
        load_cifar10(path, md5=file_md5(path))

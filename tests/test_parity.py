"""config/config.yaml against the parity table (config/parity.yaml): every hyper-parameter of
every paper experiment has the table's value and a source; drift in either direction fails."""

import copy
from pathlib import Path

import pytest

from empriors import parity

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def table():
    return parity.load_yaml(ROOT / "config/parity.yaml")


@pytest.fixture(scope="module")
def config():
    return parity.load_yaml(ROOT / "config/config.yaml")


def test_config_is_in_parity_with_the_table(table, config):
    assert parity.differences(table, config) == []


def test_rendered_table_is_current(table):
    rendered = (ROOT / "docs/parity.md").read_text()
    assert rendered == parity.markdown(table), (
        "docs/parity.md is stale: python -m empriors parity --markdown docs/parity.md"
    )


def test_every_paper_experiment_and_study_is_covered(table, config):
    assert set(config["experiments"]) <= set(table["experiments"])
    assert set(config["studies"]) <= set(table["studies"])


@pytest.mark.parametrize(
    "edit, expected",
    [
        (
            lambda c: c["experiments"]["manifold"]["mstep"].update(lr=2e-3),
            "mstep.lr: config.yaml has 0.002",
        ),
        (lambda c: c["experiments"]["mri"]["estep"].update(cg_maxiter=5), "mri.estep.cg_maxiter"),
        (
            lambda c: c["experiments"]["cifar10_mask25"]["init"].update(new_knob=1),
            "new_knob: in config.yaml",
        ),
        (
            lambda c: c["experiments"]["cifar10_blur"]["observation"].pop("std"),
            "observation.std: in the table, not",
        ),
        (
            lambda c: c["experiments"]["mri"]["mstep"]["augment"].update(shift=2),
            "mri.mstep.augment",
        ),
        (lambda c: c["studies"]["heuristics"].update(sigma_y=0.1), "heuristics.sigma_y"),
        (
            lambda c: c["experiments"].update(extra={"method": "em_mmps"}),
            "extra: not in the parity table",
        ),
        (
            lambda c: c["experiments"]["manifold"]["init"].update(cg_maxiter=1),
            "manifold.init.cg_maxiter",
        ),
    ],
)
def test_drift_in_config_is_caught(table, config, edit, expected):
    drifted = copy.deepcopy(config)
    edit(drifted)
    problems = parity.differences(table, drifted)
    assert any(expected in p for p in problems), problems


def test_entries_need_a_source_and_a_reason(table, config):
    broken = copy.deepcopy(table)
    broken["experiments"]["manifold"]["em.shards"] = {"value": 8, "source": "our choice"}
    broken["experiments"]["manifold"]["mstep.lr"] = {"value": 1e-3, "source": "a blog"}
    problems = parity.differences(broken, config)
    assert any("em.shards: an 'our choice'" in p for p in problems), problems
    assert any("mstep.lr: source 'a blog'" in p for p in problems), problems


def test_values_compare_by_type():
    assert parity.same(1e-3, 0.001) and parity.same([1, 2], [1, 2])
    assert not parity.same(None, 0) and not parity.same(True, 1) and not parity.same(1, 1.0 + 1e-9)
    assert not parity.same({"hflip": True, "shift": 1}, {"hflip": True})

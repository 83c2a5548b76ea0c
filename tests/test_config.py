import copy
from pathlib import Path

import pytest
import yaml

from empriors.config import ConfigError, ExperimentSettings, validate_sections

with open(Path(__file__).resolve().parents[1] / "config" / "config.yaml") as f:
    PAPER = yaml.safe_load(f)["experiments"]["manifold"]


def test_paper_sections_validate():
    validate_sections({k: v for k, v in PAPER.items() if k != "enabled"})


def test_unknown_key_is_named():
    bad = copy.deepcopy(PAPER["mstep"])
    bad["stepz"] = 3
    with pytest.raises(ConfigError, match="stepz"):
        validate_sections({"mstep": bad})


def test_wrong_type_is_located():
    bad = copy.deepcopy(PAPER["estep"])
    bad["covariance"] = "tweedy"
    with pytest.raises(ConfigError, match="estep/covariance"):
        validate_sections({"estep": bad})


def test_workflow_only_keys_may_be_left_out():
    em = {"shards": 4}
    ev = {k: v for k, v in PAPER["evaluate"].items() if k != "figure_iterations"}
    validate_sections({"em": em, "evaluate": ev})


def test_missing_section_is_a_clear_error():
    s = ExperimentSettings("manifold", {"diffusion": PAPER["diffusion"]}, 0, "cpu")
    assert s.schedule.sigma_max == 10.0
    with pytest.raises(ConfigError, match="'mstep'"):
        _ = s.mstep.train


def test_ema_warmup_is_read_and_defaults_to_a_fixed_decay():
    mstep = {**PAPER["mstep"], "ema": 0.999}
    validate_sections({"mstep": {**mstep, "ema_warmup": True}})
    with pytest.raises(ConfigError, match="mstep/ema_warmup"):
        validate_sections({"mstep": {**mstep, "ema_warmup": "yes"}})
    s = ExperimentSettings("manifold", {"mstep": mstep}, 0, "cpu")
    assert s.mstep.train.ema == 0.999 and s.mstep.train.ema_warmup is False
    s = ExperimentSettings("manifold", {"mstep": {**mstep, "ema_warmup": True}}, 0, "cpu")
    assert s.mstep.train.ema_warmup is True

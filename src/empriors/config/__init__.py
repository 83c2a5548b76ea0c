"""The only module that knows config keys: a validated experiment config -> typed settings.

The Snakefile validates the whole config against workflow/schemas/config.schema.yaml before
any job runs. Each rule names the config sections its stage reads and passes only those, as
JSON (so that changing, say, ``mstep`` reruns M-steps but not the data or the first E-step);
:class:`ExperimentSettings` validates the sections it got and builds typed settings on demand,
with a clear error if a stage asks for a section it was not given. The typed settings of
each section are in :mod:`empriors.config.sections`.
"""

from __future__ import annotations

import copy
import json
from functools import cached_property

import jsonschema
import torch

from empriors import distributed
from empriors.compute import Compute
from empriors.config.sections import (
    EMSettings,
    EStepSettings,
    EvaluateSettings,
    FlowSettings,
    InitSettings,
    MStepSettings,
    NetworkSettings,
    ObservationSettings,
    PosteriorSettings,
    SamplerSettings,
)
from empriors.diffusion import VESchedule
from empriors.schema import ConfigError, load_schema  # ConfigError: the stages import it here

__all__ = [
    "ConfigError",
    "EMSettings",
    "EStepSettings",
    "EvaluateSettings",
    "ExperimentSettings",
    "FlowSettings",
    "InitSettings",
    "MStepSettings",
    "NetworkSettings",
    "ObservationSettings",
    "PosteriorSettings",
    "SamplerSettings",
    "WORKFLOW_ONLY",
    "parse_json_config",
    "validate_sections",
    "validate_study",
]

# Keys that shape only the DAG, never an artifact: the workflow leaves them out of stage
# configs (workflow/rules/common.smk), so extending a run reruns nothing that is finished.
WORKFLOW_ONLY = (
    ("em", "iterations"),
    ("em", "stop_when"),
    ("evaluate", "figure_iterations"),
    ("mstep", "gpus"),
)


def validate_sections(cfg: dict) -> None:
    """Validate each given section of one experiment against the schema."""
    schema = load_schema()
    experiment = schema["$defs"]["experiment"]
    for name, value in cfg.items():
        if name not in experiment["properties"]:
            raise ConfigError(f"config error: unknown experiment section {name!r}")
        sub = {"$defs": schema["$defs"], **experiment["properties"][name]}
        sub = json.loads(json.dumps(sub))  # a copy we may relax
        for parent, key in WORKFLOW_ONLY:
            if parent != name:
                continue
            for variant in [sub, *sub.get("oneOf", [])]:  # sections with kinds are oneOf
                if key in variant.get("required", []):
                    variant["required"] = [r for r in variant["required"] if r != key]
        try:
            jsonschema.validate(value, sub)
        except jsonschema.ValidationError as e:
            where = "/".join(str(p) for p in (name, *e.absolute_path))
            raise ConfigError(f"config error at {where}: {e.message}") from None


def validate_study(name: str, cfg: dict) -> None:
    """Validate a study's block (``studies: NAME:``) against the schema."""
    schema = load_schema()
    sub = {"$defs": schema["$defs"], **schema["$defs"][name]}
    sub["required"] = [k for k in sub.get("required", []) if k != "enabled"]
    try:
        jsonschema.validate({k: v for k, v in cfg.items() if k != "enabled"}, sub)
    except jsonschema.ValidationError as e:
        where = "/".join(str(p) for p in ("studies", name, *e.absolute_path))
        raise ConfigError(f"config error at {where}: {e.message}") from None


def parse_json_config(text: str) -> dict:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"--config is not valid JSON: {e}") from None


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("config asks for device 'cuda' but no GPU is visible")
    return torch.device(name)


class ExperimentSettings:
    """One experiment's (partial) config: a typed settings object per section
    (:mod:`empriors.config.sections`), built when a stage first uses it.

    ``precision`` and ``compile`` (the config's global keys) say how the networks run
    (:attr:`compute`); ``ranks`` is this process's place in a data-parallel M-step (set by
    the mstep stage, see :mod:`empriors.distributed`).
    """

    def __init__(
        self,
        name: str,
        cfg: dict,
        seed: int,
        device: str = "auto",
        precision: str = "auto",
        compile: bool = False,
    ):
        validate_sections(cfg)
        self.name, self.raw, self.seed = name, cfg, seed
        self.device = _device(device)
        try:
            self.compute = Compute.from_config(self.device, precision, compile)
        except ValueError as e:
            raise ConfigError(f"config error at precision: {e}") from None
        self.ranks = distributed.SINGLE

    def with_estep(self, steps: int | None = None, cg_maxiter: int | None = None):
        """A copy whose E-step sampler has other steps and CG iterations (None: keep), e.g. the
        MRI reconstructions' own; provenance still records the config as given."""
        other = copy.copy(self)
        other.__dict__["estep"] = self.estep.with_changes(steps, cg_maxiter)
        return other

    def section(self, name: str) -> dict:
        if name not in self.raw:
            raise ConfigError(f"this stage was not given the config section {name!r}")
        return self.raw[name]

    @cached_property
    def method(self) -> str:
        """em_mmps | diffem | flowdiff (every stage is given it)."""
        return self.raw.get("method", "em_mmps")

    @cached_property
    def observation(self) -> ObservationSettings:
        return ObservationSettings.from_config(self.section("observation"))

    @cached_property
    def schedule(self) -> VESchedule:
        d = self.section("diffusion")
        return VESchedule(d["sigma_min"], d["sigma_max"])

    @cached_property
    def network(self) -> NetworkSettings:
        return NetworkSettings.from_config(self.section("network"))

    @cached_property
    def init(self) -> InitSettings:
        return InitSettings.from_config(self.section("init"))

    @cached_property
    def em(self) -> EMSettings:
        return EMSettings.from_config(self.section("em"))

    @cached_property
    def estep(self) -> EStepSettings:
        return EStepSettings.from_config(self.section("estep"))

    @cached_property
    def mstep(self) -> MStepSettings:
        return MStepSettings.from_config(self.section("mstep"), lambda: self.network.shape)

    @cached_property
    def flow(self) -> FlowSettings:
        return FlowSettings.from_config(self.section("flow"), lambda: self.observation.sigma_y)

    @cached_property
    def evaluate(self) -> EvaluateSettings:
        return EvaluateSettings.from_config(self.section("evaluate"))

"""The config's schema checks that the Snakefile runs before any job: light (no torch), so
that every Snakemake start, a job's included, stays fast.

The schema lives with the workflow (workflow/schemas/config.schema.yaml, one source of truth);
the package is installed editable from the repository.
"""

from __future__ import annotations

from pathlib import Path

import jsonschema
import yaml

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """The config does not satisfy the schema or lacks a section a stage needs."""


def load_schema() -> dict:
    if not SCHEMA_PATH.exists():
        raise ConfigError(
            f"config schema not found at {SCHEMA_PATH}: install the package "
            "editable from the repository (pip install -e .)"
        )
    with open(SCHEMA_PATH) as f:
        return yaml.safe_load(f)


def check_yaml_file(path: str | Path) -> None:
    """Raise :class:`ConfigError` naming ``path`` and the line if it is not valid YAML (the
    Snakefile checks config/config.yaml before loading it: Snakemake's own message names
    neither)."""
    try:
        yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(f"{path} is not valid YAML{where}: {problem}") from None


def validate_config(config: dict) -> None:
    """The whole workflow config (config.yaml and every --configfile merged) against the
    schema, before Snakemake's own validation: one line that names the key and what is wrong,
    for the error that best explains the failure (jsonschema's best_match, which looks into
    the alternatives of an observation kind instead of printing the schema)."""
    schema = load_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = list(validator.iter_errors(config))
    error = jsonschema.exceptions.best_match(errors)
    if error is not None:
        said = _said(error)
        # A block shared by YAML anchors (an experiment's variants) fails in every experiment
        # that shares it: name the first in config order, the one the user most likely edited.
        order = list(config.get("experiments") or {})
        if said[0] in order:  # said itself is among the candidates
            candidates = (s for s in map(_said, errors) if s[0] in order and s[1:] == said[1:])
            said = min(candidates, key=lambda s: order.index(s[0]))
        experiment, rest, message = said
        where = "/".join(p for p in ("experiments" if experiment else "", experiment, rest) if p)
        raise ConfigError(f"config error at {where or 'the top level'}: {message}")
    for name, exp in (config.get("experiments") or {}).items():
        _check_relations(f"experiments/{name}", exp)


def _said(error: jsonschema.ValidationError) -> tuple[str, str, str]:
    """(experiment or "", the rest of the key path, the message) of what an error reports."""
    error = _within_the_chosen_kind(error)
    path = [str(p) for p in error.absolute_path]
    message = _unknown_kind(error) or error.message
    if len(path) >= 2 and path[0] == "experiments":
        return path[1], "/".join(path[2:]), message
    return "", "/".join(path), message


def _check_relations(where: str, exp: dict) -> None:
    """What the schema cannot say, between keys of one experiment: every E-step shard and
    evaluation shard gets at least one row, and a slice range runs forwards."""
    data, em, ev = exp.get("data") or {}, exp.get("em") or {}, exp.get("evaluate") or {}
    n_train, shards = data.get("n_train"), em.get("shards")
    if n_train is not None and shards is not None and shards > n_train:
        raise ConfigError(
            f"config error at {where}/em/shards: {shards} shards but data.n_train is "
            f"{n_train} (each shard needs at least one observation)"
        )
    n, ev_shards = ev.get("n_samples"), ev.get("shards")
    if n is not None and ev_shards is not None and ev_shards > n:
        raise ConfigError(
            f"config error at {where}/evaluate/shards: {ev_shards} shards but "
            f"evaluate.n_samples is {n} (each shard needs at least one sample)"
        )
    for section in ("init", "estep"):
        block = exp.get(section) or {}
        group, batch = block.get("cg_group"), block.get("batch_size")
        if block.get("cg") == "batch" and group and isinstance(batch, int) and batch % group:
            raise ConfigError(
                f"config error at {where}/{section}/cg_group: {group} rows per CG do not "
                f"divide {section}.batch_size {batch} (a group may not straddle two batches)"
            )
    slices = data.get("slices")
    if isinstance(slices, list) and len(slices) == 2 and slices[0] > slices[1]:
        raise ConfigError(
            f"config error at {where}/data/slices: the first slice {slices[0]} is after the "
            f"last {slices[1]} (slices: [first, last], inclusive)"
        )


def _within_the_chosen_kind(error: jsonschema.ValidationError) -> jsonschema.ValidationError:
    """For a section with kinds (oneOf: one alternative per ``kind`` const), the error inside
    the alternative whose kind the config chose, instead of "not valid under any of the given
    schemas"."""
    while error.validator == "oneOf" and error.context:
        branches: dict = {}
        for sub in error.context:
            branches.setdefault(sub.schema_path[0], []).append(sub)
        chosen = [errs for errs in branches.values() if not any(map(_other_kind, errs))]
        if len(chosen) != 1:
            break
        error = jsonschema.exceptions.best_match(chosen[0])
    return error


def _unknown_kind(error: jsonschema.ValidationError) -> str | None:
    """For a section with kinds whose ``kind`` matches none: which kinds there are."""
    if error.validator != "oneOf" or not isinstance(error.instance, dict):
        return None
    kinds = []
    for alternative in error.validator_value:
        kind = alternative.get("properties", {}).get("kind", {})
        kinds += [kind["const"]] if "const" in kind else kind.get("enum", [])
    if not kinds or error.instance.get("kind") in kinds:
        return None
    return f"kind {error.instance.get('kind')!r} is not one of {kinds}"


def _other_kind(error: jsonschema.ValidationError) -> bool:
    """Whether ``error`` says the config chose another kind than this alternative's."""
    return error.validator == "const" or (
        error.validator == "enum" and list(error.relative_path) == ["kind"]
    )

"""The parity table (config/parity.yaml): the papers' and reference code's hyper-parameters,
checked against config/config.yaml and rendered as docs/parity.md.

``resolve`` flattens each experiment of the table (following ``inherit:``) to
{dotted key: entry}; ``differences`` lists every way config.yaml departs from it: a value that
differs, a key the table lacks, a key the table has that config.yaml lacks, and entries whose
source is undefined or whose "our choice" or deviation gives no reason. Torch-free.
"""

from __future__ import annotations

import math
from pathlib import Path

import yaml

OUR_CHOICE = "our choice"
# mapping-valued settings compared as one value
LEAF_MAPPINGS = ("augment",)


def load_yaml(path: str | Path) -> dict:
    return yaml.safe_load(Path(path).read_text())


def flatten(section: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists and scalars are leaves (mapping values of
    ``augment`` are leaves too: see LEAF_MAPPINGS)."""
    out = {}
    for key, value in section.items():
        path = prefix + str(key)
        if isinstance(value, dict) and path.split(".")[-1] not in LEAF_MAPPINGS:
            out |= flatten(value, path + ".")
        else:
            out[path] = value
    return out


def resolve(table: dict, name: str) -> dict:
    """The entries of experiment ``name``: its parent's (``inherit``), then its own; an
    entry ``{absent: true}`` removes the key."""
    own = dict(table["experiments"][name])
    parent = own.pop("inherit", None)
    entries = resolve(table, parent) if parent else {}
    for key, entry in own.items():
        if entry.get("absent"):
            entries.pop(key, None)
        else:
            entries[key] = entry
    return entries


def same(a, b) -> bool:
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        return a is b or a == b and type(a) is type(b)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-12, abs_tol=0.0)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b


def entry_problems(where: str, entry: dict, sources: dict) -> list[str]:
    source = entry.get("source")
    problems = []
    if source != OUR_CHOICE and source not in sources:
        problems.append(f"{where}: source {source!r} is neither 'our choice' nor in sources")
    if (source == OUR_CHOICE or "reference" in entry) and not entry.get("why"):
        problems.append(f"{where}: an 'our choice' or deviation entry needs a why")
    return problems


def differences(table: dict, config: dict) -> list[str]:
    """Every departure of ``config`` (config.yaml, merged) from ``table``: [] when in parity."""
    out = []
    sources = table["sources"]
    sections = [("experiments", n) for n in config["experiments"]]
    sections += [("studies", n) for n in config.get("studies", {})]
    for group, name in sections:
        if name not in table[group]:
            out.append(f"{group}.{name}: not in the parity table")
            continue
        entries = resolve(table, name) if group == "experiments" else table[group][name]
        values = flatten(config[group].get(name, {}))
        for key in sorted(values.keys() - entries.keys()):
            out.append(f"{group}.{name}.{key}: in config.yaml ({values[key]!r}), not in the table")
        for key in sorted(entries.keys() - values.keys()):
            out.append(f"{group}.{name}.{key}: in the table, not in config.yaml")
        for key in sorted(entries.keys() & values.keys()):
            where = f"{group}.{name}.{key}"
            want = entries[key].get("value")
            if not same(values[key], want):
                out.append(f"{where}: config.yaml has {values[key]!r}, the table {want!r}")
            out += entry_problems(where, entries[key], sources)
    for name, b in table.get("behaviours", {}).items():
        if b.get("status") not in ("match", "option", "deviation", "open"):
            out.append(f"behaviours.{name}: status {b.get('status')!r}")
    return out


def _cell(value) -> str:
    return (
        yaml.safe_dump(value, default_flow_style=True, width=1000)
        .strip()
        .removesuffix("...")
        .strip()
    )


def markdown(table: dict) -> str:
    """docs/parity.md: one table per experiment (its own entries, inherited ones named), the
    deviations, and the code behaviours."""
    lines = [
        "# Parity with the papers and the reference code",
        "",
        "Rendered from `config/parity.yaml` by",
        "`python -m empriors parity --markdown docs/parity.md`;",
        "`tests/test_parity.py` checks that `config/config.yaml` says exactly this.",
        "",
        "Sources:",
        "",
    ]
    lines += [f"- **{k}**: {v}" for k, v in table["sources"].items()]
    deviations = []
    for group in ("experiments", "studies"):
        for name, own in table[group].items():
            parent = own.get("inherit")
            lines += ["", f"## {group}.{name}", ""]
            if parent:
                lines += [f"As `{parent}`, except:", ""]
            lines += ["| key | value | source | why |", "|---|---|---|---|"]
            for key, e in own.items():
                if key == "inherit":
                    continue
                value = "(absent)" if e.get("absent") else f"`{_cell(e.get('value'))}`"
                lines.append(f"| {key} | {value} | {e['source']} | {e.get('why', '')} |")
                if "reference" in e:
                    deviations.append(
                        f"| {name}.{key} | `{_cell(e['value'])}` | {e['reference']} | {e['why']} |"
                    )
    lines += ["", "## Deviations from the reference (config values)", ""]
    lines += ["| key | ours | reference | why |", "|---|---|---|---|", *deviations]
    lines += ["", "## Behaviours (code, not config)", ""]
    lines += ["| behaviour | reference | ours | status | issue |", "|---|---|---|---|---|"]
    for name, b in table.get("behaviours", {}).items():
        lines.append(
            f"| {name} | {b['reference']} | {b['ours']} | {b['status']} | {b.get('issue', '')} |"
        )
    return "\n".join(lines) + "\n"

"""Auditing a run: ``lineage`` (an artifact's chain of inputs and configs; rule lineage in
workflow/rules/diagnostics.smk) and ``diff`` (two runs' results by content)."""

from __future__ import annotations

import sys

from empriors.data.io import ArtifactError, lineage


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

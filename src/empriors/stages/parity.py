"""``parity``: config/config.yaml checked against the parity table config/parity.yaml
(docs/parity.md; tests/test_parity.py)."""

from __future__ import annotations

import sys

from empriors.data.io import atomic_path


def cmd_parity(args) -> int:
    from empriors import parity

    table = parity.load_yaml(args.table)
    problems = parity.differences(table, parity.load_yaml(args.config))
    for line in problems:
        print(line)
    if args.markdown:
        with atomic_path(args.markdown) as tmp:
            tmp.write_text(parity.markdown(table))
    if problems:
        print(f"{len(problems)} departure(s) from {args.table}", file=sys.stderr)
        return 1
    print(f"{args.config} is in parity with {args.table}")
    return 0

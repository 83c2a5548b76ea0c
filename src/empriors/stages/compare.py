"""workflow/rules/compare.smk: stage ``compare`` (methods side by side, results/compare/) and
``claims`` (the papers' qualitative claims on this run's tables)."""

from __future__ import annotations

from pathlib import Path

from empriors.data.io import atomic_path
from empriors.stages.artifacts import read_csv, write_csv
from empriors.stages.common import plots


def cmd_compare(args):
    """results/compare/NAME.csv: every method's metric and cost per iteration, and a figure
    with a line per method."""
    from empriors.studies.compare import method_rows

    if not len(args.experiments) == len(args.methods) == len(args.metrics):
        raise ValueError("compare needs one method and one metric CSV per experiment")
    rows = []
    for exp, method, path in zip(args.experiments, args.methods, args.metrics, strict=True):
        rows += method_rows(exp, method, Path(path), args.device != "cpu")
    plots().method_comparison(rows, args.name, Path(args.figure))
    if args.claims:
        from empriors.studies import claims

        with atomic_path(args.claims) as tmp:
            tmp.write_text(claims.markdown(claims.method_claims(rows, args.out)))
    write_csv(args.out, rows)


def cmd_claims(args):
    """results/claims.{csv,md}: the papers' qualitative claims checked on this run's tables
    (empriors.studies.claims; the comparisons' claims: ``compare --claims``)."""
    from empriors.studies import claims

    read = read_csv
    rows = []
    for path in args.manifold or []:
        rows += claims.manifold_monotone(read(path), path)
    if args.heuristics:
        rows += claims.tweedie_closest(read(args.heuristics), args.heuristics)
    if args.heuristics_paper:
        path = args.heuristics_paper
        rows += claims.tweedie_closest(read(path), path, "median_divergence")
        rows += claims.tweedie_closest(
            read(path), path + " (converged divergence)", "median_converged_divergence"
        )
    if args.benchmark:
        rows += claims.sampler_ranking(read(args.benchmark), args.benchmark)
    for path in args.compare or []:
        rows += claims.method_claims(read(path), path)
    if not rows:
        raise ValueError("claims: no result table given")
    write_csv(args.out, rows)
    with atomic_path(args.markdown) as tmp:
        tmp.write_text(claims.markdown(rows))
    print(claims.markdown(rows), end="")

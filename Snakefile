# empriors: learning diffusion priors from corrupted data.
# Table of contents: the config, its validation, one rules file per stage, rule all.
# Demo: snakemake --profile local --configfile config/demo.yaml
# Paper scale on SLURM: snakemake --profile slurm results/manifold/sinkhorn.csv
#   (images: results/cifar10_mask75/fid.csv ...; MRI: results/mri/fid.csv, see README)

import sys

from snakemake.utils import min_version, validate

min_version("9.0")
sys.setrecursionlimit(100_000)  # deep per-iteration DAGs (hundreds of chained laps)


configfile: "config/config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")


wildcard_constraints:
    exp=r"[A-Za-z0-9_\-]+",
    s=r"[0-9]+",


include: "workflow/rules/common.smk"
include: "workflow/rules/corrupt.smk"
include: "workflow/rules/em.smk"
include: "workflow/rules/snapshot.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/studies.smk"
include: "workflow/rules/compare.smk"


rule all:
    input:
        all_targets(),
    default_target: True

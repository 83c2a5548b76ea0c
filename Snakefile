# empriors: learning diffusion priors from corrupted data.
# Table of contents: the config, its validation, one rules file per stage, rule all.
# Demo: snakemake --profile local --configfile config/demo.yaml
# Paper scale on SLURM: snakemake --profile slurm results/manifold/sinkhorn.csv
#   (images: results/cifar10_mask75/fid.csv ...; MRI: results/mri/fid.csv, see README)

import signal
import sys

from snakemake.utils import min_version, validate

from empriors.schema import check_yaml_file, validate_config

min_version("9.0")
sys.setrecursionlimit(100_000)  # deep per-iteration DAGs (hundreds of chained laps)

# SLURM's warning signal (slurm profile: --signal=USR1@300) and SIGTERM reach every process of
# a job step: Snakemake ignores USR1 (its shells and stages inherit that; a stage catches it
# again) and the rules' shells wait out TERM, so that the stage saves its state and ends the
# job itself, with status 75 for the profile's retries (src/empriors/preemption.py).
try:
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
except ValueError:  # not the main thread (Snakemake's API in a thread): keep its handlers
    pass
shell.prefix("set -euo pipefail; trap : TERM; ")


check_yaml_file("config/config.yaml")  # a syntax error named with its line


configfile: "config/config.yaml"


# one line naming a wrong key first (src/empriors/schema.py), then Snakemake's own validation
validate_config(config)
validate(config, "workflow/schemas/config.schema.yaml")


wildcard_constraints:
    exp=r"[A-Za-z0-9_\-]+",
    s=r"[0-9]+",


include: "workflow/rules/common.smk"
include: "workflow/rules/corrupt.smk"
include: "workflow/rules/em.smk"
include: "workflow/rules/snapshot.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/diagnostics.smk"
include: "workflow/rules/studies.smk"
include: "workflow/rules/compare.smk"
include: "workflow/rules/unknown.smk"


report: "workflow/report/workflow.rst"


rule all:
    input:
        lambda wc: all_targets(),  # a function: with em.stop_when the last lap is found late
    default_target: True

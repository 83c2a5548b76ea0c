# A target under results/NAME/ where NAME is no configured experiment (nor a study): an error
# that names the configured experiments instead of Snakemake's "No rule to produce".
rule unknown_experiment:
    input:
        unknown_experiment_error,
    output:
        "results/{exp}/{path}",
    wildcard_constraints:
        exp=unknown_experiment_pattern(),
        path=".+",
    log:
        "results/{exp}/logs/unknown/{path}.log",
    conda:
        ENV
    shell:
        "false"

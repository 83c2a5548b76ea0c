# DVC snapshots, on the submit host only, one at a time (global resource dvc=1 plus DVC's
# own --wait-for-lock). Jobs never call dvc or git.


localrules:
    snapshot_data,
    snapshot_iteration,


rule snapshot_data:
    input:
        "results/{exp}/{name}.h5",
    output:
        "results/{exp}/{name}.h5.dvc",
    wildcard_constraints:
        name="observations|truth",
    resources:
        dvc=1,
    log:
        "results/{exp}/logs/snapshot_{name}.log",
    conda:
        ENV
    shell:
        "dvc --wait-for-lock add --quiet {input} > {log} 2>&1"


rule snapshot_iteration:
    input:
        iteration_files,
    output:
        "results/{exp}/iter_{k}.dvc",
    wildcard_constraints:
        k=r"[0-9]+|final",
    resources:
        dvc=1,
    log:
        "results/{exp}/logs/snapshot_iter_{k}.log",
    conda:
        ENV
    shell:
        "dvc --wait-for-lock add --quiet results/{wildcards.exp}/iter_{wildcards.k} > {log} 2>&1"

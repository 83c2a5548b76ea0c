# Data and observations: y = A x + e, seeded from the config.
# Stage modules: empriors.stages.corrupt (src/empriors/stages/).


rule phantoms:
    output:
        directory("results/{exp}/phantoms"),
    params:
        args=stage_args("data"),
    log:
        "results/{exp}/logs/phantoms.log",
    conda:
        ENV
    shell:
        "python -m empriors phantoms {params.args} --out {output} 2> {log}"


rule corrupt:
    input:
        corrupt_inputs,
    output:
        obs="results/{exp}/observations.h5",
        truth="results/{exp}/truth.h5",
    params:
        args=stage_args("data", "observation"),
    log:
        "results/{exp}/logs/corrupt.log",
    conda:
        ENV
    shell:
        "python -m empriors corrupt {params.args} "
        "--observations {output.obs} --truth {output.truth} 2> {log}"

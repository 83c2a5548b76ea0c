# Evaluation: outside iter_k/ so snapshots stay clean; truth.h5 is read only here.


rule eval_reference:
    input:
        truth="results/{exp}/truth.h5",
    output:
        "results/{exp}/eval/reference.json",
    params:
        args=stage_args("evaluate"),
    threads: THREADS
    log:
        "results/{exp}/logs/eval_reference.log",
    conda:
        ENV
    shell:
        "python -m empriors eval-reference {params.args} --truth {input.truth} "
        "--out {output} 2> {log}"


rule evaluate:
    input:
        prior="results/{exp}/iter_{k}/prior.pt",
        truth="results/{exp}/truth.h5",
        reference="results/{exp}/eval/reference.json",
    output:
        json="results/{exp}/eval/iter_{k}.json",
        samples="results/{exp}/eval/iter_{k}_samples.h5",
    wildcard_constraints:
        k=r"[0-9]+",
    params:
        args=stage_args("evaluate", "diffusion", "network"),
    threads: THREADS
    resources:
        gpu=GPUS,
    log:
        "results/{exp}/logs/evaluate_{k}.log",
    conda:
        ENV
    shell:
        "python -m empriors evaluate {params.args} --iteration {wildcards.k} "
        "--prior {input.prior} --truth {input.truth} --reference {input.reference} "
        "--out {output.json} --samples-out {output.samples} 2> {log}"


rule aggregate_sinkhorn:
    input:
        evals=lambda wc: evals(wc.exp),
        samples=lambda wc: figure_samples(wc.exp),
        truth="results/{exp}/truth.h5",
        snapshots=lambda wc: snapshots(wc.exp),
    output:
        csv="results/{exp}/sinkhorn.csv",
        curve="results/{exp}/figures/sinkhorn.png",
        marginals="results/{exp}/figures/marginals.png",
    log:
        "results/{exp}/logs/aggregate.log",
    conda:
        ENV
    shell:
        "python -m empriors aggregate --evals {input.evals} "
        "--marginal-samples {input.samples} --truth {input.truth} --out {output.csv} "
        "--figures-dir results/{wildcards.exp}/figures 2> {log}"

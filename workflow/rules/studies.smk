# Studies with exact answers (no EM): the covariance-heuristic study (paper Fig. 2), in two
# variants: `heuristics` (ours: weighted clouds, converged debiased divergence) and
# `heuristics_paper` (the reference code's procedure and metric).
# Stage modules: empriors.stages.studies (src/empriors/stages/).


rule heuristics_part:
    output:
        "results/{study}/parts/part_{j}.json",
    wildcard_constraints:
        study="heuristics|heuristics_paper",
        j=r"[0-9]+",
    params:
        args=lambda wc: study_args(wc.study, on_device=True)(wc),
    threads: THREADS
    resources:
        gpu=GPUS,
        gpu_slots=GPU_SLOTS,
    log:
        "results/{study}/logs/part_{j}.log",
    conda:
        ENV
    shell:
        "python -m empriors heuristics-part {params.args} --variant {wildcards.study} "
        "--part {wildcards.j} --out {output} 2> {log}"


rule heuristics_aggregate:
    input:
        lambda wc: study_parts(wc.study),
    output:
        csv="results/{study}/divergence.csv",
        summary="results/{study}/summary.csv",
        figure=report("results/{study}/figures/divergence.png", caption="../report/heuristics.rst", category="studies", subcategory="{study}"),
    wildcard_constraints:
        study="heuristics|heuristics_paper",
    log:
        "results/{study}/logs/aggregate.log",
    conda:
        ENV
    shell:
        "python -m empriors heuristics-aggregate --variant {wildcards.study} --parts {input} "
        "--out {output.csv} --summary {output.summary} --figure {output.figure} 2> {log}"


rule posterior_benchmark_task:
    output:
        "results/posterior_benchmark/tasks/{task}.json",
    wildcard_constraints:
        task="box|random|blur|sr4",
    params:
        args=study_args("posterior_benchmark"),
    threads: THREADS
    log:
        "results/posterior_benchmark/logs/{task}.log",
    conda:
        ENV
    shell:
        "python -m empriors benchmark-task {params.args} --task {wildcards.task} "
        "--out {output} 2> {log}"


rule posterior_benchmark_table:
    input:
        lambda wc: [f"results/posterior_benchmark/tasks/{t}.json"
                    for t in study("posterior_benchmark")["tasks"]],
    output:
        csv="results/posterior_benchmark/table.csv",
        md=report("results/posterior_benchmark/table.md", caption="../report/benchmark.rst", category="studies", subcategory="posterior_benchmark"),
    log:
        "results/posterior_benchmark/logs/table.log",
    conda:
        ENV
    shell:
        "python -m empriors benchmark-table --tasks {input} --out {output.csv} "
        "--markdown {output.md} 2> {log}"

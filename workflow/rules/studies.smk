# Studies with exact answers (no EM): the covariance-heuristic study (paper Fig. 2).


rule heuristics_part:
    output:
        "results/heuristics/parts/part_{j}.json",
    wildcard_constraints:
        j=r"[0-9]+",
    params:
        args=study_args("heuristics"),
    threads: THREADS
    log:
        "results/heuristics/logs/part_{j}.log",
    conda:
        ENV
    shell:
        "python -m empriors heuristics-part {params.args} --part {wildcards.j} "
        "--out {output} 2> {log}"


rule heuristics_aggregate:
    input:
        lambda wc: study_parts("heuristics"),
    output:
        csv="results/heuristics/divergence.csv",
        summary="results/heuristics/summary.csv",
        figure="results/heuristics/figures/divergence.png",
    log:
        "results/heuristics/logs/aggregate.log",
    conda:
        ENV
    shell:
        "python -m empriors heuristics-aggregate --parts {input} --out {output.csv} "
        "--summary {output.summary} --figure {output.figure} 2> {log}"

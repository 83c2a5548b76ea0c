# Label-free diagnostics per lap (no clean data): results/{exp}/diagnostics.csv, beside the
# clean metric in figures/diagnostics.png (src/empriors/metrics/diagnostics.py).


rule diagnose:
    input:
        obs="results/{exp}/observations.h5",
        samples=diagnose_samples,
        estep=lambda wc: shard_files(wc) if int(wc.k) > 0 else [],
        previous=lambda wc: previous_shard_files(wc) if int(wc.k) > 1 else [],
    output:
        "results/{exp}/diagnostics/iter_{k}.json",
    wildcard_constraints:
        k=r"[0-9]+",
    params:
        args=stage_args("observation"),
        estep=lambda wc, input: f"--estep {' '.join(input.estep)}" if input.estep else "",
        previous=lambda wc, input: f"--previous {' '.join(input.previous)}" if input.previous else "",
    threads: THREADS
    log:
        "results/{exp}/logs/diagnose_{k}.log",
    conda:
        ENV
    shell:
        "python -m empriors diagnose {params.args} --iteration {wildcards.k} "
        "--observations {input.obs} --samples {input.samples} {params.estep} "
        "{params.previous} --out {output} 2> {log}"


rule diagnostics:
    input:
        laps=lambda wc: [f"results/{wc.exp}/diagnostics/iter_{k}.json"
                         for k in range(iterations(wc.exp) + 1)],
        metric=lambda wc: metric_csv(wc.exp),
    output:
        csv="results/{exp}/diagnostics.csv",
        correlation="results/{exp}/diagnostics_correlation.json",
        figure="results/{exp}/figures/diagnostics.png",
    log:
        "results/{exp}/logs/diagnostics.log",
    conda:
        ENV
    shell:
        "python -m empriors diagnostics --diagnostics {input.laps} --metric {input.metric} "
        "--out {output.csv} --correlation {output.correlation} --figure {output.figure} "
        "2> {log}"

# Label-free diagnostics per lap (no clean data): results/{exp}/diagnostics.csv, beside the
# clean metric in figures/diagnostics.png (src/empriors/metrics/diagnostics.py).
# Stage modules: empriors.stages.diagnostics, empriors.stages.lineage (src/empriors/stages/).


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
        csv=report("results/{exp}/diagnostics.csv", caption="../report/diagnostics_table.rst", category="{exp}", subcategory="tables"),
        correlation="results/{exp}/diagnostics_correlation.json",
        figure=report("results/{exp}/figures/diagnostics.png", caption="../report/diagnostics.rst", category="{exp}", subcategory="figures"),
    log:
        "results/{exp}/logs/diagnostics.log",
    conda:
        ENV
    shell:
        "python -m empriors diagnostics --diagnostics {input.laps} --metric {input.metric} "
        "--out {output.csv} --correlation {output.correlation} --figure {output.figure} "
        "2> {log}"


# em.stop_when: after each lap k >= window, decide whether EM stops there; iterations(exp)
# (common.smk) walks these checkpoints, so the DAG never asks for a lap after the stop.
checkpoint stop_check:
    input:
        lambda wc: [f"results/{wc.exp}/diagnostics/iter_{j}.json" for j in range(int(wc.k) + 1)],
    output:
        "results/{exp}/stop/iter_{k}.json",
    wildcard_constraints:
        k=r"[0-9]+",
    params:
        rule=lambda wc: shlex.quote(json.dumps(experiment(wc.exp)["em"]["stop_when"])),
    log:
        "results/{exp}/logs/stop_check_{k}.log",
    conda:
        ENV
    shell:
        "python -m empriors stop-check --rule {params.rule} --diagnostics {input} "
        "--out {output} 2> {log}"


rule final:
    input:
        final_prior,
    output:
        "results/{exp}/final.json",
    params:
        iteration=lambda wc: "final" if has_final(wc.exp) else iterations(wc.exp),
        reason=lambda wc: shlex.quote(final_reason(wc)),
    log:
        "results/{exp}/logs/final.log",
    conda:
        ENV
    shell:
        "python -m empriors final --prior {input} --iteration {params.iteration} "
        "--reason {params.reason} --out {output} 2> {log}"


rule lineage:
    input:
        final_prior,
    output:
        report("results/{exp}/lineage.txt", caption="../report/lineage.rst", category="{exp}",
               subcategory="lineage"),
    log:
        "results/{exp}/logs/lineage.log",
    conda:
        ENV
    shell:
        "python -m empriors lineage {input} > {output} 2> {log}"

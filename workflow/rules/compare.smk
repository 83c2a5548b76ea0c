# Methods side by side: config `compare: {NAME: [experiment, ...]}` lists experiments that
# differ in `method:`; results/compare/NAME.csv has each one's metric and cost per iteration.


rule compare:
    input:
        metrics=lambda wc: [metric_csv(e) for e in compared(wc.name)],
    output:
        csv="results/compare/{name}.csv",
        figure="results/compare/figures/{name}.png",
    params:
        experiments=lambda wc: " ".join(compared(wc.name)),
        methods=lambda wc: " ".join(experiment(e)["method"] for e in compared(wc.name)),
        device=config["device"],
    log:
        "results/compare/logs/{name}.log",
    conda:
        ENV
    shell:
        "python -m empriors compare --name {wildcards.name} "
        "--experiments {params.experiments} --methods {params.methods} "
        "--metrics {input.metrics} --device {params.device} --out {output.csv} "
        "--figure {output.figure} 2> {log}"

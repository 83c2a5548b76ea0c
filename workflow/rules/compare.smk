# Methods side by side: config `compare: {NAME: [experiment, ...]}` lists experiments that
# differ in `method:`; results/compare/NAME.csv has each one's metric and cost per iteration.
# Stage modules: empriors.stages.compare (src/empriors/stages/).


rule compare:
    input:
        metrics=lambda wc: [metric_csv(e) for e in compared(wc.name)],
    output:
        csv="results/compare/{name}.csv",
        figure=report("results/compare/figures/{name}.png", caption="../report/compare.rst", category="comparisons", subcategory="{name}"),
        claims="results/compare/{name}_claims.md",
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
        "--figure {output.figure} --claims {output.claims} 2> {log}"


rule claims:
    input:
        unpack(claims_inputs),
    output:
        csv="results/claims.csv",
        md=report("results/claims.md", caption="../report/claims.rst", category="claims"),
    params:
        args=lambda wc, input: claims_args(input),
    log:
        "results/logs/claims.log",
    conda:
        ENV
    shell:
        "python -m empriors claims {params.args} --out {output.csv} --markdown {output.md} "
        "> {log} 2>&1"


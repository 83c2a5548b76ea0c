# Evaluation: outside iter_k/ so snapshots stay clean; truth.h5 is read only here.
# Stage modules: empriors.stages.evaluate (manifold), empriors.stages.evaluate_images,
#   empriors.stages.reconstruct (MRI) (src/empriors/stages/).


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
        obs="results/{exp}/observations.h5",  # DiffEM's conditional model reconstructs them
    output:
        json="results/{exp}/eval/iter_{k}.json",
        samples="results/{exp}/eval/iter_{k}_samples.h5",
    wildcard_constraints:
        k=r"[0-9]+|final",
        exp=experiments_pattern(images=False),
    params:
        args=stage_args("evaluate", "estep", "diffusion", "network")  # estep: paper_metric,
    threads: THREADS
    resources:
        gpu=GPUS,
        gpu_slots=GPU_SLOTS,
    log:
        "results/{exp}/logs/evaluate_{k}.log",
    conda:
        ENV
    shell:
        "python -m empriors evaluate {params.args} --iteration {wildcards.k} "
        "--prior {input.prior} --truth {input.truth} --reference {input.reference} "
        "--observations {input.obs} --out {output.json} --samples-out {output.samples} "
        "2> {log}"


rule aggregate_sinkhorn:
    input:
        evals=lambda wc: evals(wc.exp),
        samples=lambda wc: figure_samples(wc.exp),
        truth="results/{exp}/truth.h5",
        snapshots=lambda wc: snapshots(wc.exp),
    output:
        csv=report("results/{exp}/sinkhorn.csv", caption="../report/metric_table.rst", category="{exp}", subcategory="tables"),
        curve=report("results/{exp}/figures/sinkhorn.png", caption="../report/sinkhorn.rst", category="{exp}", subcategory="figures"),
        marginals=report("results/{exp}/figures/marginals.png", caption="../report/marginals.rst", category="{exp}", subcategory="figures"),
    wildcard_constraints:
        exp=experiments_pattern(images=False),
    log:
        "results/{exp}/logs/aggregate.log",
    conda:
        ENV
    shell:
        "python -m empriors aggregate --evals {input.evals} "
        "--marginal-samples {input.samples} --truth {input.truth} --out {output.csv} "
        "--figures-dir results/{wildcards.exp}/figures 2> {log}"


# Images: evaluation samples are drawn in shards (GPU jobs, like the E-step), then scored.


rule sample_prior:
    input:
        prior="results/{exp}/iter_{k}/prior.pt",
        obs="results/{exp}/observations.h5",  # DiffEM's conditional model reconstructs them
    output:
        "results/{exp}/eval/iter_{k}/samples_{s}.h5",
    wildcard_constraints:
        k=r"[0-9]+|final",
        exp=experiments_pattern(images=True),
    params:
        args=stage_args("evaluate", "diffusion", "network"),
    threads: THREADS
    resources:
        gpu=GPUS,
        gpu_slots=GPU_SLOTS,
    log:
        "results/{exp}/logs/sample_prior_{k}_{s}.log",
    conda:
        ENV
    shell:
        "python -m empriors sample-prior {params.args} --iteration {wildcards.k} "
        "--shard {wildcards.s} --prior {input.prior} --observations {input.obs} "
        "--out {output} 2> {log}"


rule evaluate_images:
    input:
        samples=eval_shard_files,
        truth="results/{exp}/truth.h5",
    output:
        "results/{exp}/eval/iter_{k}.json",
    wildcard_constraints:
        k=r"[0-9]+|final",
        exp=experiments_pattern(images=True),
    params:
        args=stage_args("evaluate"),
    threads: THREADS
    resources:
        gpu=GPUS,
        gpu_slots=GPU_SLOTS,
    log:
        "results/{exp}/logs/evaluate_{k}.log",
    conda:
        ENV
    shell:
        "python -m empriors evaluate-images {params.args} --iteration {wildcards.k} "
        "--samples {input.samples} --truth {input.truth} --out {output} 2> {log}"


rule posterior_examples:
    input:
        prior=last_prior,
        obs="results/{exp}/observations.h5",
        truth="results/{exp}/truth.h5",
    output:
        report("results/{exp}/figures/posterior_examples.png", caption="../report/posterior_examples.rst", category="{exp}", subcategory="figures"),
    wildcard_constraints:
        exp=experiments_pattern(images=True),
    params:
        args=stage_args("evaluate", "estep", "diffusion", "network"),
    threads: THREADS
    resources:
        gpu=GPUS,
        gpu_slots=GPU_SLOTS,
    log:
        "results/{exp}/logs/posterior_examples.log",
    conda:
        ENV
    shell:
        "python -m empriors posterior-examples {params.args} --prior {input.prior} "
        "--observations {input.obs} --truth {input.truth} --out {output} 2> {log}"


rule reconstruct:
    input:
        prior="results/{exp}/iter_{k}/prior.pt",
        truth="results/{exp}/truth.h5",
    output:
        json="results/{exp}/eval/iter_{k}/reconstructions.json",
        samples="results/{exp}/eval/iter_{k}/reconstructions.h5",
        figure=report("results/{exp}/figures/reconstructions_iter_{k}.png", caption="../report/reconstructions.rst", category="{exp}", subcategory="reconstructions"),
    wildcard_constraints:
        k=r"[0-9]+",
        exp=experiments_pattern(images=True),
    params:
        args=stage_args("evaluate", "observation", "estep", "diffusion", "network"),
    threads: THREADS
    resources:
        gpu=GPUS,
        gpu_slots=GPU_SLOTS,
    log:
        "results/{exp}/logs/reconstruct_{k}.log",
    conda:
        ENV
    shell:
        "python -m empriors reconstruct {params.args} --iteration {wildcards.k} "
        "--prior {input.prior} --truth {input.truth} --out {output.json} "
        "--samples-out {output.samples} --figure {output.figure} 2> {log}"


rule aggregate_images:
    input:
        evals=lambda wc: evals(wc.exp),
        samples=lambda wc: grid_samples(wc.exp),
        reconstructions=lambda wc: reconstruction_evals(wc.exp),
        truth="results/{exp}/truth.h5",
        snapshots=lambda wc: snapshots(wc.exp),
    output:
        csv=report("results/{exp}/fid.csv", caption="../report/metric_table.rst", category="{exp}", subcategory="tables"),
        curve=report("results/{exp}/figures/metric_curve.png", caption="../report/metric_curve.rst", category="{exp}", subcategory="figures"),
        grids=report("results/{exp}/figures/samples.png", caption="../report/samples.rst", category="{exp}", subcategory="figures"),
    wildcard_constraints:
        exp=experiments_pattern(images=True),
    log:
        "results/{exp}/logs/aggregate.log",
    conda:
        ENV
    shell:
        "python -m empriors aggregate-images --evals {input.evals} "
        "--grid-samples {input.samples} --reconstructions {input.reconstructions} "
        "--truth {input.truth} --out {output.csv} "
        "--figures-dir results/{wildcards.exp}/figures 2> {log}"

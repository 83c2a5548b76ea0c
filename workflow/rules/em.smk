# EM laps as explicit file targets: iter_0 = Gaussian q0; for k >= 1, S E-step shards
# read iter_{k-1}/prior.pt and the M-step writes iter_k/prior.pt.
# Stage modules: empriors.stages.init_prior, empriors.stages.estep, empriors.stages.mstep
#   (src/empriors/stages/).


rule init_prior:
    input:
        obs="results/{exp}/observations.h5",
    output:
        "results/{exp}/iter_0/prior.pt",
    params:
        args=stage_args("init", "diffusion"),
    threads: THREADS
    resources:
        gpu=GPUS,
        gpu_slots=GPU_SLOTS,
    log:
        "results/{exp}/logs/init_prior.log",
    conda:
        ENV
    shell:
        "python -m empriors init-prior {params.args} --observations {input.obs} "
        "--out {output} 2> {log}"


rule estep:
    input:
        prior=previous_prior,
        obs="results/{exp}/observations.h5",
    output:
        "results/{exp}/iter_{k}/samples_{s}.h5",
    wildcard_constraints:
        k=r"[1-9][0-9]*",
    params:
        args=stage_args("em", "estep", "diffusion", "network"),
    threads: THREADS
    resources:
        gpu=GPUS,
        gpu_slots=GPUS,  # one slot: shards_per_gpu shards share a GPU
    log:
        "results/{exp}/logs/estep_{k}_{s}.log",
    conda:
        ENV
    shell:
        "python -m empriors estep {params.args} --iteration {wildcards.k} "
        "--shard {wildcards.s} --prior {input.prior} --observations {input.obs} "
        "--out {output} 2> {log}"


rule mstep:
    input:
        samples=shard_files,
        prior=previous_prior,
        obs="results/{exp}/observations.h5",
    output:
        "results/{exp}/iter_{k}/prior.pt",
    wildcard_constraints:
        k=r"[1-9][0-9]*",
    params:
        # with mstep.gpus > 1, --processes N: the stage restarts itself under torchrun
        args=stage_args("estep", "mstep", "diffusion", "network", "observation", "flow",
                        extra=mstep_processes),
        resume="results/{exp}/.resume",  # undeclared on purpose: survives a failed run
    threads: THREADS
    resources:
        gpu=mstep_gpu_resource,
        gpu_slots=mstep_gpu_slots,
    log:
        "results/{exp}/logs/mstep_{k}.log",
    conda:
        ENV
    shell:
        "python -m empriors mstep {params.args} --iteration {wildcards.k} "
        "--samples {input.samples} --prior {input.prior} --observations {input.obs} "
        "--out {output} --resume-dir {params.resume} 2>> {log}"


# DiffEM: the prior that evaluation samples is a fresh unconditional model trained on the
# last lap's reconstructions (a target of its own, versioned like an iteration); with
# mstep.final_data: regenerated, on reconstructions drawn anew from the last lap's model.


rule regenerate:
    input:
        prior=last_prior,
        obs="results/{exp}/observations.h5",
    output:
        "results/{exp}/iter_final/samples_{s}.h5",
    params:
        args=stage_args("em", "estep", "diffusion", "network"),
    threads: THREADS
    resources:
        gpu=GPUS,
        gpu_slots=GPUS,
    log:
        "results/{exp}/logs/regenerate_{s}.log",
    conda:
        ENV
    shell:
        "python -m empriors estep {params.args} --iteration final "
        "--shard {wildcards.s} --prior {input.prior} --observations {input.obs} "
        "--out {output} 2> {log}"


rule final_prior:
    input:
        samples=final_prior_data,
    output:
        "results/{exp}/iter_final/prior.pt",
    params:
        args=stage_args("estep", "mstep", "diffusion", "network"),
        resume="results/{exp}/.resume",
    threads: THREADS
    resources:
        gpu=GPUS,
        gpu_slots=GPU_SLOTS,
    log:
        "results/{exp}/logs/final_prior.log",
    conda:
        ENV
    shell:
        "python -m empriors final-prior {params.args} --samples {input.samples} "
        "--out {output} --resume-dir {params.resume} 2>> {log}"

# Helpers shared by the rules: experiment lookup, iteration ranges, CLI arguments.
import copy
import json
import re
import shlex

ENV = "../../envs/empriors.yaml"
# A GPU per E-step/M-step/evaluate job unless the config runs on the CPU; on SLURM the
# executor turns `gpu` into --gpus.
GPUS = 0 if config["device"] == "cpu" else 1
# GPU sharing on one machine (local profile): the profile caps `gpu_slots`; an E-step shard
# holds one slot, every other GPU job a whole GPU (`shards_per_gpu` slots), so with
# shards_per_gpu: k and gpu_slots = k x GPUs, k shards run side by side on each GPU. On SLURM
# every job has GPUs of its own (the executor requests `gpu` of them).
SHARDS_PER_GPU = config.get("shards_per_gpu", 1)
GPU_SLOTS = GPUS * SHARDS_PER_GPU
THREADS = config.get("threads", 1)
# Keys that only shape the DAG; left out of the stage config so that extending a run
# (more iterations, other figure iterations) does not rerun finished stages.
WORKFLOW_ONLY = (
    ("em", "iterations"),
    ("em", "stop_when"),
    ("evaluate", "figure_iterations"),
    ("mstep", "gpus"),
    ("mstep", "final_prior"),
    ("mstep", "final_data"),
)
# How the networks run (global keys, src/empriors/compute.py): passed to the stages that run
# a network (those given the "network" section), so a change reruns exactly those. The
# defaults (auto, no compile) add nothing: runs made before these keys existed stay current.
PRECISION, COMPILE = config.get("precision", "auto"), config.get("compile", False)
COMPUTE_ARGS = "" if (PRECISION, COMPILE) == ("auto", False) else (
    f"--precision {PRECISION} --compile {str(COMPILE).lower()} ")


def experiment(name):
    if name not in config["experiments"]:
        raise ValueError(f"unknown experiment {name!r}; configured: {sorted(config['experiments'])}")
    return config["experiments"][name]


# results/ folders that are not experiments: the studies and the comparisons
RESULT_FOLDERS = ("compare", "heuristics", "heuristics_paper", "posterior_benchmark")


def unknown_experiment_pattern():
    """Regex of a results/ folder name that is neither a configured experiment nor a study
    (wildcard constraint of rule unknown_experiment)."""
    known = "|".join(re.escape(n) for n in [*config["experiments"], *RESULT_FOLDERS])
    return rf"(?!(?:{known})/)[A-Za-z0-9_\-]+"  # /: the name ends there


def unknown_experiment_error(wildcards):
    """Input function of the rule unknown_experiment, the clear error for a target of an
    experiment the config does not have (instead of Snakemake's "No rule to produce")."""
    experiment(wildcards.exp)  # raises, naming the configured experiments
    return []


def is_image(exp):
    return experiment(exp)["data"]["kind"] != "manifold"


def experiments_pattern(images):
    """Regex of the experiment names of one kind (wildcard constraint of kind-specific rules)."""
    names = [n for n in config["experiments"] if is_image(n) == images]
    return "|".join(names) if names else "(?!)"


def corrupt_inputs(wildcards):
    """Generated inputs of the corrupt stage: MRI phantoms (real data in data/ are not
    declared, so that dry runs plan on machines without them; the stage checks them)."""
    exp = experiment(wildcards.exp)
    data = exp["data"]
    if data["kind"] != "phantoms":
        return []
    expected = f"results/{exp.get('seed_name', wildcards.exp)}/phantoms"
    if data["folder"].rstrip("/") != expected:
        raise ValueError(f"experiments.{wildcards.exp}.data.folder must be {expected} for phantoms")
    return [expected]


def iterations(exp):
    """The experiment's last lap: em.iterations, or with em.stop_when the first lap whose
    stop check (checkpoint stop_check, diagnostics.smk) says stop. Call it from input
    functions only: with a stop rule the DAG grows lap by lap as the checks finish."""
    em = experiment(exp)["em"]
    stop_when, last = em.get("stop_when"), em["iterations"]
    if not stop_when:
        return last
    for k in range(stop_when["window"], last):
        with open(checkpoints.stop_check.get(exp=exp, k=str(k)).output[0]) as f:
            if json.load(f)["stop"]:
                return k
    return last


def final_prior(wildcards):
    exp = wildcards.exp
    k = "final" if has_final(exp) else iterations(exp)
    return f"results/{exp}/iter_{k}/prior.pt"


def final_reason(wildcards):
    em = experiment(wildcards.exp)["em"]
    if has_final(wildcards.exp):
        return "DiffEM's final unconditional prior"
    if not em.get("stop_when"):
        return f"the last of em.iterations = {em['iterations']} laps"
    k = iterations(wildcards.exp)
    if k < em["iterations"]:
        return f"em.stop_when stopped after lap {k} (results/{wildcards.exp}/stop/iter_{k}.json)"
    return f"em.stop_when never stopped: the last of {em['iterations']} laps"


def shards(exp):
    return experiment(exp)["em"]["shards"]


def stage_args(*sections, extra=None):
    """Params function of a stage that reads these config sections: the CLI's common
    arguments (experiment, seed, device, threads) and those sections as JSON.

    Only the named sections are passed, so a config change reruns exactly the stages that
    read it (params are a rerun trigger). The returned function takes only wildcards:
    Snakemake stops tracking params functions that ask for threads, input or resources.
    ``extra(wildcards)``: more arguments of this stage, part of the same string.
    """

    def args(wildcards):
        exp = experiment(wildcards.exp)
        block = {name: copy.deepcopy(exp[name]) for name in ("method", "seed_name", *sections)
                 if name in exp}
        for parent, key in WORKFLOW_ONLY:
            if parent in block:
                block[parent].pop(key, None)
        compute = COMPUTE_ARGS if "network" in sections else ""
        more = extra(wildcards) if extra else ""
        return (f"--exp {wildcards.exp} --seed {config['seed']} --device {config['device']} "
                f"--threads {THREADS} {compute}{more}"
                f"--config {shlex.quote(json.dumps(block, sort_keys=True))}")

    return args


def study(name):
    return config.get("studies", {}).get(name)


def study_args(name, on_device=False):
    """Params function of a study job: the seed, threads, (with ``on_device``) the device and
    the study's block as JSON."""

    def args(wildcards):
        block = {k: v for k, v in study(name).items() if k != "enabled"}
        device = f"--device {config['device']} " if on_device else ""
        return (f"--seed {config['seed']} --threads {THREADS} {device}"
                f"--config {shlex.quote(json.dumps(block, sort_keys=True))}")

    return args


def study_parts(name):
    cfg = study(name)
    jobs = -(-cfg["seeds"] // cfg["seeds_per_job"])
    return [f"results/{name}/parts/part_{j}.json" for j in range(jobs)]


def mstep_gpus(exp):
    """Processes (GPUs) of one M-step job; the global batch must divide by them."""
    mstep = experiment(exp)["mstep"]
    gpus = mstep.get("gpus", 1)
    if mstep["batch_size"] % gpus:
        raise ValueError(f"experiments.{exp}.mstep.batch_size {mstep['batch_size']} is not "
                         f"divisible by mstep.gpus {gpus}")
    if gpus > 1 and experiment(exp)["method"] == "flowdiff":
        raise ValueError(f"experiments.{exp}: FlowDiff's M-step runs as one process "
                         "(mstep.gpus must be 1)")
    return gpus


def mstep_gpu_resource(wildcards):
    return GPUS * mstep_gpus(wildcards.exp)


def mstep_gpu_slots(wildcards):
    return GPU_SLOTS * mstep_gpus(wildcards.exp)


def mstep_processes(wildcards):
    """`--processes N` for mstep.gpus: N > 1 (the stage restarts itself under torchrun), else
    nothing, so that the command of a 1-GPU M-step is what it always was."""
    gpus = mstep_gpus(wildcards.exp)
    return f"--processes {gpus} " if gpus > 1 else ""


def previous_prior(wildcards):
    return f"results/{wildcards.exp}/iter_{int(wildcards.k) - 1}/prior.pt"


def shard_files(wildcards):
    return [f"results/{wildcards.exp}/iter_{wildcards.k}/samples_{s}.h5"
            for s in range(shards(wildcards.exp))]


def final_prior_data(wildcards):
    """What DiffEM's final prior trains on: the last lap's E-step samples, or, with
    mstep.final_data: regenerated (DiffEM's CIFAR code), reconstructions of every observation
    drawn anew from the last lap's conditional model (iter_final/samples_S.h5)."""
    exp = wildcards.exp
    lap = "final" if experiment(exp)["mstep"].get("final_data") == "regenerated" else iterations(exp)
    return [f"results/{exp}/iter_{lap}/samples_{s}.h5" for s in range(shards(exp))]


def last_prior(wildcards):
    return f"results/{wildcards.exp}/iter_{iterations(wildcards.exp)}/prior.pt"


def iteration_files(wildcards):
    """What iteration k's folder holds once finished (what its snapshot versions)."""
    files = [f"results/{wildcards.exp}/iter_{wildcards.k}/prior.pt"]
    if wildcards.k == "final":  # with regenerated data, the reconstructions it trained on
        regenerated = experiment(wildcards.exp)["mstep"].get("final_data") == "regenerated"
        return files + (shard_files(wildcards) if regenerated else [])
    return files + (shard_files(wildcards) if int(wildcards.k) > 0 else [])


def previous_shard_files(wildcards):
    return [f"results/{wildcards.exp}/iter_{int(wildcards.k) - 1}/samples_{s}.h5"
            for s in range(shards(wildcards.exp))]


def diagnose_samples(wildcards):
    """Lap k's evaluation samples (prior samples; DiffEM: reconstructions)."""
    if is_image(wildcards.exp):
        return eval_shard_files(wildcards)
    return f"results/{wildcards.exp}/eval/iter_{wildcards.k}_samples.h5"


def has_final(exp):
    """DiffEM: a final unconditional prior (iter_final/) after the last lap, unless
    mstep.final_prior is false (DiffEM's manifold code scores the conditional model itself)."""
    e = experiment(exp)
    return e["method"] == "diffem" and e["mstep"].get("final_prior", True)


def scored_iterations(exp):
    """The iterations evaluation scores: 0..K, then DiffEM's ``final``."""
    return [*range(iterations(exp) + 1)] + (["final"] if has_final(exp) else [])


def snapshots(exp):
    if not config["dvc"]["enabled"]:
        return []
    data = [f"results/{exp}/observations.h5.dvc", f"results/{exp}/truth.h5.dvc"]
    return data + [f"results/{exp}/iter_{k}.dvc" for k in scored_iterations(exp)]


def evals(exp):
    return [f"results/{exp}/eval/iter_{k}.json" for k in scored_iterations(exp)]


def eval_shard_files(wildcards):
    n = experiment(wildcards.exp)["evaluate"]["shards"]
    return [f"results/{wildcards.exp}/eval/iter_{wildcards.k}/samples_{s}.h5" for s in range(n)]


def grid_samples(exp):
    ks = [k for k in experiment(exp)["evaluate"]["figure_iterations"] if k <= iterations(exp)]
    return [f"results/{exp}/eval/iter_{k}/samples_0.h5" for k in sorted(set(ks))]


def reconstructs(exp):
    """MRI: whether held-out reconstructions are scored every iteration."""
    return "accelerations" in experiment(exp)["evaluate"]


def reconstruction_evals(exp):
    if not reconstructs(exp):
        return []
    if experiment(exp)["observation"]["kind"] != "kspace_columns":
        raise ValueError(f"experiments.{exp}.evaluate.accelerations needs kspace_columns observations")
    return [f"results/{exp}/eval/iter_{k}/reconstructions.json" for k in range(iterations(exp) + 1)]


def last_prior(wildcards):
    return f"results/{wildcards.exp}/iter_{iterations(wildcards.exp)}/prior.pt"


def figure_samples(exp):
    ks = [k for k in experiment(exp)["evaluate"]["figure_iterations"] if k <= iterations(exp)]
    return [f"results/{exp}/eval/iter_{k}_samples.h5" for k in sorted(set(ks))]


def metric_csv(exp):
    """The per-iteration metric table of an experiment."""
    return f"results/{exp}/fid.csv" if is_image(exp) else f"results/{exp}/sinkhorn.csv"


def compared(name):
    groups = config.get("compare", {})
    if name not in groups:
        raise ValueError(f"no comparison {name!r}; configured: {sorted(groups)}")
    return groups[name]


def claims_inputs(wildcards):
    """The tables results/claims.md checks: the EM-MMPS manifold runs and the studies."""
    inputs = {}
    manifolds = [f"results/{n}/sinkhorn.csv" for n, e in config["experiments"].items()
                 if e["enabled"] and not is_image(n) and e["method"] == "em_mmps"]
    if manifolds:
        inputs["manifold"] = manifolds
    for name, key, table in (("heuristics", "heuristics", "summary.csv"),
                             ("heuristics_paper", "heuristics_paper", "summary.csv"),
                             ("posterior_benchmark", "benchmark", "table.csv")):
        block = study(name)
        if block and block["enabled"]:
            inputs[key] = f"results/{name}/{table}"
    return inputs


def claims_args(input):
    args = []
    for key in ("manifold", "heuristics", "heuristics_paper", "benchmark"):
        if key in input.keys():
            value = input[key]
            paths = value if isinstance(value, list) else [value]
            args.append(f"--{key.replace('_', '-')} " + " ".join(paths))
    return " ".join(args)


def all_targets():
    targets = ["results/claims.md"] if claims_inputs(None) else []
    for name in ("heuristics", "heuristics_paper"):
        block = study(name)
        if block and block["enabled"]:
            targets += [f"results/{name}/divergence.csv",
                        f"results/{name}/figures/divergence.png"]
    benchmark = study("posterior_benchmark")
    if benchmark and benchmark["enabled"]:
        targets += ["results/posterior_benchmark/table.csv"]
    for name, exp in config["experiments"].items():
        if not exp["enabled"]:
            continue
        # the last lap, here and not only in the aggregations' input functions: with
        # em.stop_when rule all waits for the stop checks, also when the rule is turned on
        # after a finished run (whose up-to-date tables would not ask for them)
        k = iterations(name)
        if is_image(name):
            targets += [f"results/{name}/fid.csv", f"results/{name}/figures/metric_curve.png",
                        f"results/{name}/figures/samples.png",
                        f"results/{name}/figures/posterior_examples.png"]
            if reconstructs(name):
                targets += [f"results/{name}/figures/reconstructions_iter_{k}.png"]
        else:
            targets += [f"results/{name}/sinkhorn.csv", f"results/{name}/figures/sinkhorn.png",
                        f"results/{name}/figures/marginals.png"]
        targets += [f"results/{name}/diagnostics.csv", f"results/{name}/final.json",
                    f"results/{name}/lineage.txt"]
    return targets

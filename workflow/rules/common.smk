# Helpers shared by the rules: experiment lookup, iteration ranges, CLI arguments.
import copy
import json
import shlex

ENV = "../../envs/empriors.yaml"
# A GPU per E-step/M-step/evaluate job unless the config runs on the CPU. Locally the
# profile caps gpu globally; on SLURM the executor turns it into --gpus.
GPUS = 0 if config["device"] == "cpu" else 1
THREADS = config.get("threads", 1)
# Keys that only shape the DAG; left out of the stage config so that extending a run
# (more iterations, other figure iterations) does not rerun finished stages.
WORKFLOW_ONLY = (("enabled",), ("em", "iterations"), ("evaluate", "figure_iterations"))


wildcard_constraints:
    exp=r"[A-Za-z0-9_\-]+",
    s=r"[0-9]+",


def experiment(name):
    if name not in config["experiments"]:
        raise ValueError(f"unknown experiment {name!r}; configured: {sorted(config['experiments'])}")
    return config["experiments"][name]


def iterations(exp):
    return experiment(exp)["em"]["iterations"]


def shards(exp):
    return experiment(exp)["em"]["shards"]


def stage_args(wildcards, threads=THREADS):
    """Common CLI arguments of a stage job: experiment, seed, device and its config block."""
    block = copy.deepcopy(experiment(wildcards.exp))
    for path in WORKFLOW_ONLY:
        parent = block
        for key in path[:-1]:
            parent = parent[key]
        parent.pop(path[-1], None)
    return (f"--exp {wildcards.exp} --seed {config['seed']} --device {config['device']} "
            f"--threads {threads} --config {shlex.quote(json.dumps(block, sort_keys=True))}")


def previous_prior(wildcards):
    return f"results/{wildcards.exp}/iter_{int(wildcards.k) - 1}/prior.pt"


def shard_files(wildcards):
    return [f"results/{wildcards.exp}/iter_{wildcards.k}/samples_{s}.h5"
            for s in range(shards(wildcards.exp))]


def iteration_files(wildcards):
    """What iteration k's folder holds once finished (what its snapshot versions)."""
    files = [f"results/{wildcards.exp}/iter_{wildcards.k}/prior.pt"]
    return files + (shard_files(wildcards) if int(wildcards.k) > 0 else [])


def snapshots(exp):
    if not config["dvc"]["enabled"]:
        return []
    data = [f"results/{exp}/observations.h5.dvc", f"results/{exp}/truth.h5.dvc"]
    return data + [f"results/{exp}/iter_{k}.dvc" for k in range(iterations(exp) + 1)]


def evals(exp):
    return [f"results/{exp}/eval/iter_{k}.json" for k in range(iterations(exp) + 1)]


def figure_samples(exp):
    ks = [k for k in experiment(exp)["evaluate"]["figure_iterations"] if k <= iterations(exp)]
    return [f"results/{exp}/eval/iter_{k}_samples.h5" for k in sorted(set(ks))]


def all_targets():
    targets = []
    for name, exp in config["experiments"].items():
        if exp["enabled"]:
            targets += [f"results/{name}/sinkhorn.csv", f"results/{name}/figures/sinkhorn.png",
                        f"results/{name}/figures/marginals.png"]
    return targets

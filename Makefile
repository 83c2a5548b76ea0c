# The two fresh-machine commands:  make demo  |  make test
# TORCH: the torch requirement. The default is the CPU wheel this project's CI machines
# carry; on a GPU cluster use e.g. `make setup TORCH=torch` (pip then picks a CUDA build).
VENV ?= .venv
TORCH ?= torch==2.13.0
PY := $(VENV)/bin/python
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: setup profiles demo compare report test lint dryrun-paper clean-results readme-figures

setup: $(VENV)/.installed profiles

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[workflow,dev]"
	# azula (baseline samplers' reference, cross-checked in tests): pinned, without its
	# torchvision dependency, which cannot load beside the CPU torch wheel.
	$(PY) -m pip install --quiet --no-deps "azula==0.11.1"
	$(PY) -m pip install --quiet "einops>=0.7"
	# fastmri (FFTs, SliceDataset, PSNR/SSIM): pinned and without its dependencies for the same
	# reason; the ones its used modules import come from pyproject (h5py, pandas via dvc) and here.
	$(PY) -m pip install --quiet --no-deps "fastmri==0.3.0"
	$(PY) -m pip install --quiet "requests" "pandas" "scikit-image>=0.22" "runstats>=2"
	touch $@

# `snakemake --profile NAME` looks for ./NAME/config.yaml: link the profiles into the root
# (git-ignored links, so the tracked layout stays as DESIGN.md lays it out).
profiles:
	ln -sfn workflow/profiles/slurm slurm
	ln -sfn workflow/profiles/local local

demo: setup
	snakemake --profile local --configfile config/demo.yaml

# The second demo target: every demo experiment with each method (EM-MMPS, DiffEM,
# FlowDiff) and the side-by-side tables results/compare/{manifold,digits,mri}.csv
compare: setup
	snakemake results/compare/manifold.csv results/compare/digits.csv results/compare/mri.csv \
		--profile local --configfile config/demo.yaml

# One HTML report of a finished demo: every figure with its caption, the tables, the claims,
# each experiment's lineage (run `make demo` first)
report: setup
	snakemake --profile local --configfile config/demo.yaml --report results/report.html

# The figures the README shows, copied from a finished `make demo` + `make compare` into the
# tracked docs/figures/ (results/ is DVC's, not git's): RESULT/figures/NAME.png ->
# docs/figures/RESULT_NAME.png
README_FIGURES := digits_mask/figures/metric_curve.png digits_mask/figures/samples.png \
	digits_mask/figures/posterior_examples.png mri/figures/metric_curve.png \
	mri/figures/samples.png mri/figures/reconstructions_iter_4.png mri/figures/diagnostics.png \
	compare/figures/manifold.png compare/figures/digits.png compare/figures/mri.png

readme-figures:
	mkdir -p docs/figures
	for f in $(README_FIGURES); do cp results/$$f docs/figures/$$(echo $$f | sed 's#/figures/#_#'); done

# The test files run on PYTEST_WORKERS processes (pytest-xdist), each file's tests on one of
# them (--dist loadfile: a module's fixtures, e.g. a finished demo run, are built once).
PYTEST_WORKERS ?= 2
test: setup
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile

lint: setup
	$(PY) -m ruff check .
	snakemake --lint

dryrun-paper: setup
	snakemake --profile slurm results/manifold/sinkhorn.csv -n

clean-results:
	rm -rf results .snakemake

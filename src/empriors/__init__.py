"""empriors: learning diffusion priors from corrupted observations.

Methods: EM with moment-matching posterior sampling (EM-MMPS), DiffEM, FlowDiff.
The workflow (Snakefile) only calls the command line in :mod:`empriors.cli`.
"""

__version__ = "0.1.0"

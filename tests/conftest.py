import pytest
import torch


@pytest.fixture
def g():
    gen = torch.Generator()
    gen.manual_seed(1234)
    return gen


def random_gaussian(dim, rank, g, residual=0.05):
    """A LowRankGaussian with known parameters (float64)."""
    from empriors.gaussian import LowRankGaussian

    q, _ = torch.linalg.qr(torch.randn(dim, rank, generator=g, dtype=torch.float64))
    variances = residual + torch.rand(rank, generator=g, dtype=torch.float64) * 2 + 0.5
    mean = torch.randn(dim, generator=g, dtype=torch.float64)
    return LowRankGaussian(mean, q, variances, residual)


# The slowest test files (real workflow runs, minutes each) first: `make test` spreads files
# over 2 workers (pytest-xdist, --dist loadfile), and a long file started last leaves one
# worker alone at the end.
SLOW_FILES = (
    "test_slurm.py",
    "test_reliability.py",
    "test_methods_workflow.py",
    "test_images_workflow.py",
    "test_workflow.py",
    "test_distributed.py",
    "test_mri_full_size.py",
    "test_report.py",
)


def pytest_collection_modifyitems(items):
    def rank(item):
        name = item.path.name
        return SLOW_FILES.index(name) if name in SLOW_FILES else len(SLOW_FILES)

    items.sort(key=rank)  # stable: the order within a file and among the rest stays

import time

from empriors.data.io import now, provenance, save_checkpoint
from empriors.studies.compare import iteration_cost, method_rows


def test_a_sub_second_job_costs_more_than_zero_hours(tmp_path):
    """A q0 fit on small data finishes within a second; its job_hours must not round to 0."""
    folder = tmp_path / "iter_0"
    folder.mkdir()
    started = now()
    time.sleep(0.02)
    save_checkpoint(folder / "prior.pt", {}, provenance("init_prior", {}, [], 0, started))
    cost = iteration_cost([folder / "prior.pt"])
    assert 0.02 <= cost["wall_s"] < 5 and cost["job_hours"] == cost["wall_s"] / 3600
    (tmp_path / "sinkhorn.csv").write_text("iteration,sinkhorn\n0,1.5\n")
    (row,) = method_rows("toy", "em_mmps", tmp_path / "sinkhorn.csv", on_gpu=True)
    assert row["value"] == 1.5 and 0 < row["job_hours"] == row["gpu_hours"] < 5 / 3600

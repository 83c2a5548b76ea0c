"""The papers' qualitative claims (empriors.studies.claims): each check holds, fails or holds
partly on small tables built to do so."""

from empriors.studies import claims


def _laps(values):
    return [{"iteration": str(k), "sinkhorn": str(v)} for k, v in enumerate(values)]


def test_manifold_monotone_names_the_laps_that_rise():
    (ok,) = claims.manifold_monotone(_laps([3.0, 2.0, 1.0]), "m")
    assert ok["verdict"] == "holds" and ok["measured"] == "3 -> 2 -> 1"
    (bad,) = claims.manifold_monotone(
        _laps([3.0, 2.0, 2.5, 1.0]) + [{"iteration": "final", "sinkhorn": "9"}], "m"
    )
    assert bad["verdict"] == "partly" and "rises at lap 2 (+0.5)" in bad["measured"]
    (worse,) = claims.manifold_monotone(_laps([1.0, 2.0, 3.0]), "m")
    assert worse["verdict"] == "fails"


def _summary(values: dict[float, dict[str, float]], column="median"):
    return [
        {"sigma_t": s, "heuristic": h, column: v} for s, hv in values.items() for h, v in hv.items()
    ]


def test_tweedie_closest_and_orders_of_magnitude():
    table = {
        0.01: {"zeros": 1.0, "sigma_t": 0.5, "cov_x": 0.2, "tweedie": 1e-3},  # 200x
        1.0: {"zeros": 1.0, "sigma_t": 0.5, "cov_x": 0.2, "tweedie": 0.1},  # 2x
    }
    closest, orders = claims.tweedie_closest(_summary(table), "h")
    assert closest["verdict"] == "holds" and orders["verdict"] == "partly"
    assert orders["measured"] == "1 of 2 sigma_t"
    table[1.0]["tweedie"] = 0.3  # cov_x closer
    closest, _ = claims.tweedie_closest(
        _summary(table, "median_divergence"), "h", "median_divergence"
    )
    assert closest["verdict"] == "partly" and "1: 0.67x" in closest["measured"]


def test_sampler_ranking_against_the_papers_order():
    rows = []
    for task, order in (
        ("box", ["mmps", "tmpd", "diffpir", "pigdm", "dps"]),
        ("sr4", ["dps", "mmps", "tmpd", "diffpir", "pigdm"]),
    ):
        for rank, sampler in enumerate(order):
            for steps in (10, 100):  # each sampler at its best step count
                rows.append(
                    {"task": task, "sampler": sampler, "sinkhorn": str(rank + 1 + steps / 1000)}
                )
    best, order = claims.sampler_ranking(rows, "b")
    assert best["verdict"] == "partly" and "sr4: dps > mmps" in best["measured"]
    assert order["measured"] == "16 of 20 pairs in the paper's order"  # dps ahead of 4 on sr4
    assert order["verdict"] == "partly"


def test_method_claims_use_diffems_final_prior_and_the_last_laps():
    rows = [
        {"method": "em_mmps", "iteration": "0", "value": 3.0},
        {"method": "em_mmps", "iteration": "2", "value": 1.0},
        {"method": "diffem", "iteration": "2", "value": 0.5},  # reconstructions: not the claim
        {"method": "diffem", "iteration": "final", "value": 1.2},
        {"method": "flowdiff", "iteration": "2", "value": 0.9},
    ]
    diffem, flowdiff = claims.method_claims(rows, "c")
    assert diffem["verdict"] == "fails" and diffem["measured"] == "diffem 1.2 vs em_mmps 1 (+20%)"
    assert flowdiff["verdict"] == "holds"
    assert "| claim | source |" in claims.markdown([diffem, flowdiff])
    # without a final prior (the manifold's DiffEM), its last lap is the claim's
    laps_only = [r for r in rows if r["iteration"] != "final"]
    assert claims.method_claims(laps_only, "c")[0]["measured"] == "diffem 0.5 vs em_mmps 1 (-50%)"


def test_stop_decision_needs_window_small_relative_changes():
    from empriors.metrics.diagnostics import stop_decision

    assert stop_decision([1.0, 0.5], 0.1, 2)[0] is False  # too few laps
    assert stop_decision([1.0, 0.5, 0.49, 0.485], 0.1, 2)[0] is True
    stop, reason = stop_decision([1.0, 0.5, 0.49, 0.3], 0.1, 2)
    assert stop is False and "not all below" in reason
    assert stop_decision([float("nan"), 1.0, 1.0], 0.1, 2)[0] is False

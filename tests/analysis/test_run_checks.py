"""The run-period check (sparkad/analysis/run_checks.py): calibration of the false-alarm rate, sensitivity to
faulty runs, change points, over-dispersion, and the whole chain on a generated sample with a detector
fault (generator → extraction → AE → scores → per-LS counts → check)."""
import json

import numpy as np
import pandas as pd
import pytest
from scipy import special, stats

from sparkad.analysis import run_checks as rc
from sparkad.analysis.intervals import clopper_pearson
from sparkad.core.config import load_conf
from sparkad.core.errors import ConfigError, SparkadError

FIRST_RUN = 200000


def sample(rng, n_runs=200, rate=0.01, faulty=(), factor=3.0, rho=0.0, step=None, ls=(20, 60), per_ls=(50, 150)):
    """A per-(run, LS) count table: binomial counts (beta-binomial between runs when rho > 0), runs in
    ``faulty`` at ``factor`` × the rate, and a rate step (first run index, factor) if given."""
    parts = []
    for i in range(n_runs):
        nls = rng.integers(*ls)
        n = rng.integers(*per_ls, nls)
        p = rate * (step[1] if step and i >= step[0] else 1.0)
        if rho > 0:
            s = 1 / rho - 1
            p = rng.beta(p * s, (1 - p) * s)
        if FIRST_RUN + i in faulty:
            p *= factor
        parts.append(pd.DataFrame({"run": FIRST_RUN + i, "luminosityBlock": np.arange(1, nls + 1), "events": n,
                                   "selected": rng.binomial(n, p)}))
    return pd.concat(parts, ignore_index=True)


def flagged_runs(res):
    return sorted(f["run"] for f in res["flagged"] if f["unit"] == "run")


def test_intervals_and_exact_tails():
    lo, hi = clopper_pearson([5, 0, 10], [10, 10, 10], 0.95)
    assert lo[0] == pytest.approx(0.1871, abs=1e-4) and hi[0] == pytest.approx(0.8129, abs=1e-4)
    assert lo[1] == 0 and hi[2] == 1
    assert np.isnan(clopper_pearson([0], [0])[0][0])
    k, n = np.array([30, 2, 50, 0, 400]), np.array([1000, 1000, 5000, 100, 20000])
    a, b = np.array([10., 10, 50, 1, 100]), np.array([990., 990, 4950, 99, 9900])
    up, down = rc._log_tails(k, n, a, b)
    # brute force: every term of the pmf summed (scipy's betabinom.sf is 1 − cdf and loses the far tail)
    full = [stats.betabinom.logpmf(np.arange(ni + 1), ni, ai, bi) for ni, ai, bi in zip(n, a, b)]
    assert up == pytest.approx([special.logsumexp(f[ki:]) for f, ki in zip(full, k)], rel=1e-9, abs=1e-12)
    assert down == pytest.approx([special.logsumexp(f[:ki + 1]) for f, ki in zip(full, k)], rel=1e-9, abs=1e-10)
    assert np.exp(up[:4]) == pytest.approx(stats.betabinom.sf(k[:4] - 1, n[:4], a[:4], b[:4]), rel=1e-9)
    # far in the tail the log-space sum stays exact where 1 - cdf has cancelled to 0
    up, _ = rc._log_tails(np.array([200]), np.array([5000]), np.array([5e5]), np.array([4.95e7]))
    assert np.isfinite(up[0]) and up[0] < np.log(1e-50)
    assert stats.binom.logsf(199, 5000, 0.01) == pytest.approx(up[0], rel=2e-3)


def test_false_alarm_rate_of_homogeneous_runs_matches_alpha():
    """200 checks of 200 homogeneous binomial runs: the family-wise false-alarm rate is near alpha
    (Šidák over the runs), not ~1 (no trials factor) and not ~0 (an over-correction)."""
    rng = np.random.default_rng(11)
    fw01 = fw10 = 0
    p_local = []
    for _ in range(200):
        n = rng.integers(2000, 8000, 200)
        res = rc.homogeneity_test(n, rng.binomial(n, 0.01), alpha=0.1)
        fw10 += res["flagged"].any()
        fw01 += (res["p_global"] < 0.01).any()
        p_local.append(res["p_value"])
    p_local = np.concatenate(p_local)
    assert fw01 <= 8            # expected 2 (Poisson(2) ≥ 9: 2e-4)
    assert 8 <= fw10 <= 32      # expected 20: the correction is neither missing nor far too strong
    assert 0.03 < (p_local < 0.05).mean() <= 0.055  # local p-values are (slightly conservatively) uniform
    assert 0.07 < (p_local < 0.1).mean() <= 0.105


def test_faulty_runs_are_flagged_with_pulls_ranges_and_segments():
    faulty = (FIRST_RUN + 10, FIRST_RUN + 50, FIRST_RUN + 120)
    res = rc.run_period_check(sample(np.random.default_rng(5), faulty=faulty), {"alpha": 0.01})
    assert flagged_runs(res) == list(faulty)
    runs = pd.DataFrame(res["runs"]).set_index("run")
    assert (runs.loc[list(faulty), "pull"] > 5).all()
    assert (runs.drop(list(faulty)).pull.abs() < 4.5).all()
    assert not runs.loc[list(faulty), "in_reference"].any()  # a faulty run does not dilute the reference
    assert runs.loc[list(faulty), "expected"].to_numpy() == pytest.approx(0.01, rel=0.05)
    ranges = [f for f in res["flagged"] if f["unit"] == "ls_range"]
    assert ranges and len([f for f in ranges if f["run"] not in faulty]) <= 1
    for f in res["flagged"]:
        assert f["p_global"] < 0.01 and f["p_value"] <= f["p_global"]
    # each faulty run is a segment of its own; nothing else splits the sequence
    assert res["change_points"] == [FIRST_RUN + 10, FIRST_RUN + 11, FIRST_RUN + 50, FIRST_RUN + 51,
                                    FIRST_RUN + 120, FIRST_RUN + 121]
    json.dumps(res, allow_nan=False)  # JSON-able, no NaN


def test_leave_one_out_reference_keeps_a_dominant_fault_visible():
    """One run holding 90% of the events at 1.3 × the rate: a reference that included it would sit at
    ~1.27%, and the run would hardly deviate from it (< 2 σ); against the other runs it is > 5 σ off."""
    rng = np.random.default_rng(3)
    n = np.r_[np.full(20, 2000), 360000]
    k = rng.binomial(n, np.r_[np.full(20, 0.01), 0.013])
    res = rc.homogeneity_test(n, k, alpha=0.01, outlier_screen=None, exclude_flagged=False)
    assert res["flagged"][-1] and res["pull"][-1] > 5
    assert res["flagged"].sum() == 1
    assert stats.binom.sf(k[-1] - 1, n[-1], k.sum() / n.sum()) > 0.01  # the self-including reference


def test_change_points_found_at_the_step():
    res = rc.run_period_check(sample(np.random.default_rng(8), step=(100, 1.5)), {})
    assert len(res["change_points"]) == 1 and abs(res["change_points"][0] - (FIRST_RUN + 100)) <= 1
    seg = res["segments"]
    assert seg[1]["rate"] / seg[0]["rate"] == pytest.approx(1.5, rel=0.1)
    assert sum(s["events"] for s in seg) == res["summary"]["events"]
    # exact optimum on a clear sequence, with a minimum segment length
    n = np.full(20, 1000)
    k = np.r_[np.full(7, 10), np.full(6, 50), np.full(7, 10)]
    assert rc.changepoints(n, k, 20.0) == [0, 7, 13]
    assert rc.changepoints(n, np.full(20, 10), 20.0) == [0]
    # PELT returns the optimum of every partition (brute force over all 2^11 on a short noisy sequence)
    rng = np.random.default_rng(1)
    n = rng.integers(200, 400, 12)
    k = rng.binomial(n, np.r_[np.full(5, 0.05), np.full(4, 0.12), np.full(3, 0.05)])
    cn, ck = np.r_[0, np.cumsum(n)], np.r_[0, np.cumsum(k)]

    def objective(starts, pen):
        bounds = list(starts) + [len(n)]
        return sum(rc._seg_cost(cn, ck, np.array([a]), b)[0] for a, b in zip(bounds[:-1], bounds[1:])) \
            + pen * (len(starts) - 1)

    for pen, min_size in ((5.0, 1), (15.0, 1), (5.0, 3), (40.0, 2)):
        best = min(objective([0] + [i + 1 for i in range(11) if mask >> i & 1], pen)
                   for mask in range(2 ** 11)
                   if min(np.diff([0] + [i + 1 for i in range(11) if mask >> i & 1] + [12])) >= min_size)
        found = rc.changepoints(n, k, pen, min_size=min_size)
        assert min(np.diff(found + [12])) >= min_size
        assert objective(found, pen) == pytest.approx(best, rel=1e-12)
    # homogeneous sequences: the BIC-like penalty rarely splits them
    splits = sum(len(rc.run_period_check(sample(np.random.default_rng(100 + s), n_runs=100), {})["change_points"])
                 for s in range(10))
    assert splits <= 1


def test_beta_binomial_absorbs_run_to_run_overdispersion():
    rng = np.random.default_rng(21)
    fb = fbb = 0
    rhos = []
    for _ in range(5):
        df = sample(rng, n_runs=100, rho=0.001)
        fb += len(flagged_runs(rc.run_period_check(df, {"method": "binomial"})))
        res = rc.run_period_check(df, {"method": "beta-binomial"})
        fbb += len(flagged_runs(res))
        rhos.append(res["summary"]["runs"]["rho"])
    assert fb >= 10 and fbb <= 2
    assert 0.0005 < np.mean(rhos) < 0.002
    # the over-dispersion estimate does not hide real faults, nor does it appear in binomial data
    faulty = (FIRST_RUN + 30, FIRST_RUN + 31, FIRST_RUN + 70)
    res = rc.run_period_check(sample(rng, n_runs=100, rho=0.0005, faulty=faulty, factor=4), {"method": "beta-binomial"})
    assert set(faulty) <= set(flagged_runs(res)) and len(flagged_runs(res)) <= 4
    n = rng.integers(2000, 8000, 300)
    assert rc.overdispersion(n, rng.binomial(n, 0.01)) < 5e-5
    # 15 % of the runs faulty: plain moments read the faults as over-dispersion, trimmed moments do not
    runs = rc.per_run(sample(rng, n_runs=100, faulty=tuple(FIRST_RUN + i for i in range(0, 100, 7))))
    assert rc.overdispersion(runs.events, runs.selected) > 0.002
    assert rc.robust_overdispersion(runs.events, runs.selected) < 2e-4


def test_aggregation_periods_and_settings():
    df = pd.DataFrame({"run": [1, 1, 1, 1, 2, 2, 3], "luminosityBlock": [1, 2, 11, 11, 5, 25, 1],
                       "events": [10, 20, 30, 5, 40, 50, 60], "selected": [1, 2, 3, 0, 4, 5, 6]})
    runs = rc.per_run(df)
    assert runs.to_dict("list") == {"run": [1, 2, 3], "lumi_sections": [3, 2, 1], "first_ls": [1, 5, 1],
                                    "last_ls": [11, 25, 1], "events": [65, 90, 60], "selected": [6, 9, 6]}
    rng_ = rc.per_ls_range(df, 10)
    assert rng_[["run", "first_ls", "last_ls", "events"]].values.tolist() == \
        [[1, 1, 2, 30], [1, 11, 11, 35], [2, 5, 5, 40], [2, 25, 25, 50], [3, 1, 1, 60]]
    per = rc.per_period(df, [{"name": "A", "first_run": 1, "last_run": 2}, {"name": "B", "first_run": 3, "last_run": 9}])
    assert per[["period", "runs", "events", "selected"]].values.tolist() == [["A", 2, 155, 15], ["B", 1, 60, 6]]
    res = rc.run_period_check(sample(np.random.default_rng(2), n_runs=40, faulty=(FIRST_RUN + 25,)),
                              {"periods": [{"name": "early", "first_run": FIRST_RUN, "last_run": FIRST_RUN + 19},
                                           {"name": "late", "first_run": FIRST_RUN + 20, "last_run": FIRST_RUN + 39}]})
    assert [p["period"] for p in res["periods"]] == ["early", "late"]
    assert res["summary"]["runs_outside_periods"] == 0 and flagged_runs(res) == [FIRST_RUN + 25]
    with pytest.raises(ConfigError, match="unknown key"):
        rc.settings({"alpah": 0.1})
    with pytest.raises(ConfigError, match="method"):
        rc.settings({"method": "poisson"})
    with pytest.raises(ConfigError, match="last_run"):
        rc.settings({"periods": [{"name": "x", "first_run": 5, "last_run": 1}]})
    with pytest.raises(SparkadError, match="lacks column"):
        rc.run_period_check(df.drop(columns="selected"), {})
    # conf/monitor.yaml's check section is the documented copy of the code defaults
    conf = load_conf("monitor")["check"]
    assert set(conf) == set(rc.DEFAULTS) and rc.settings(conf)["alpha"] == rc.DEFAULTS["alpha"]


def test_plot(tmp_path):
    res = rc.run_period_check(sample(np.random.default_rng(4), n_runs=60, faulty=(FIRST_RUN + 7,)),
                              {"periods": [{"name": "P1", "first_run": FIRST_RUN + 30, "last_run": FIRST_RUN + 59}]})
    p = rc.plot_rate_vs_run(res, tmp_path / "r.png")
    assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 10_000


# ------------------------------------------------------------------------------ generated detector fault

FAULTY_RUNS = (194115, 194117)


@pytest.fixture(scope="module")
def fault_chain(tmp_path_factory):
    """Reference AE trained on fault-free data-like events (the `fault` preset without its fault, another
    seed); then the `fault` preset with and without the hot cells, scored in process."""
    from sparkad.extract.run import ExtractOptions, run_extraction
    from sparkad.extract.fileset import load_fileset
    from sparkad.generate.api import _raw_preset, generate
    from sparkad.model.directory import Scorer
    from sparkad.train.api import train_from_config

    d = tmp_path_factory.mktemp("fault")

    def hlf(name, faults, seed=None):
        raw = _raw_preset("fault")
        if not faults:
            raw["samples"]["data"]["faults"] = []
        fs = generate(raw, n_events=100_000, out_dir=d / name / "gen", seed=seed, progress=False)
        run_extraction(load_fileset(fs), ExtractOptions.from_conf(d / name / "hlf", feature_set="alad24",
                                                                  executor="iterative", progress=False),
                       log=lambda m: None)
        return d / name / "hlf"

    ref = hlf("reference", faults=False, seed=405)
    cfg = d / "train.yaml"
    cfg.write_text("cocktail: {train_on_data: true}\ntraining: {threads: 1}\n")
    train_from_config("ae", ref, d / "model", config_file=cfg, epochs=5, batch_size=256, progress=False,
                      log=lambda *a: None)
    scorer = Scorer(d / "model")
    out = {}
    for name, faults in (("fault", True), ("clean", False)):
        df = pd.read_parquet(hlf(name, faults))
        score = scorer.score_frame(df)[scorer.score_names[0]]
        k = int(0.01 * len(score))
        threshold = np.sort(score)[::-1][k]  # exactly k events above it (the (k+1)-th largest)
        df["selected"] = score > threshold
        per_ls = df.groupby(["run", "luminosityBlock"], as_index=False).agg(events=("selected", "size"),
                                                                            selected=("selected", "sum"))
        out[name] = {"per_ls": per_ls, "threshold": float(threshold), "selected": int(df.selected.sum())}
    return out


def test_generated_detector_fault_is_flagged(fault_chain):
    f = fault_chain["fault"]
    assert f["per_ls"].run.nunique() == 12 and f["selected"] == int(0.01 * f["per_ls"].events.sum())
    res = rc.run_period_check(f["per_ls"], {})
    runs = pd.DataFrame(res["runs"]).set_index("run")
    flagged = flagged_runs(res)
    assert set(FAULTY_RUNS) <= set(flagged) and len(flagged) <= len(FAULTY_RUNS) + 1, runs[["rate", "pull"]]
    assert (runs.loc[list(FAULTY_RUNS), "pull"] > 5).all()
    # the LS ranges flagged lie in the faulty runs (at most one elsewhere)
    ranges = [r for r in res["flagged"] if r["unit"] == "ls_range"]
    assert ranges and len([r for r in ranges if r["run"] not in FAULTY_RUNS]) <= 1
    # beta-binomial: the over-dispersion estimate does not absorb the fault
    bb = rc.run_period_check(f["per_ls"], {"method": "beta-binomial"})
    assert set(FAULTY_RUNS) <= set(flagged_runs(bb)) and len(flagged_runs(bb)) <= len(FAULTY_RUNS) + 1
    assert {r["run"] for r in bb["flagged"] if r["unit"] == "ls_range"} & set(FAULTY_RUNS)


def test_generated_sample_without_fault_flags_no_run(fault_chain):
    c = fault_chain["clean"]
    res = rc.run_period_check(c["per_ls"], {})
    assert len(flagged_runs(res)) <= 1, pd.DataFrame(res["runs"])[["run", "rate", "pull", "p_global"]]
    assert len(rc.run_period_check(c["per_ls"], {"method": "beta-binomial"})["flagged"]) <= 1

"""The SM cocktail of the generated 13 TeV preset reproduces seeds/001 Table 1's composition.

Real pipeline: `sparkad.generate.api.generate("sm13")` -> `sparkad.extract.run_extraction`
(vae21, single_lepton: one e or mu with pT > 23 GeV and relative isolation < 0.45) ->
`sparkad.train.cocktail.build_training_data` (fractions = sum of xsec x lumi / N_gen over selected events).
Nothing here is tuned to the answer: the fractions come from the generated events and the fileset
cross sections (sigma x BR x generator filter efficiency, conf/generate/xsec.yaml).
"""
from __future__ import annotations

import time

import pytest

from sparkad.train.cocktail import CocktailConfig, build_training_data, load_hlf
from sparkad.extract.run import ExtractOptions, run_extraction
from sparkad.extract.fileset import load_fileset
from sparkad.generate.api import generate

N_EVENTS = 60_000  # over the whole preset (SM + BSM samples, preset proportions); ~20 s on 2 cores
SM = ["wjets", "qcd", "dyjets", "ttbar"]
# seeds/001 Table 1: composition column (%), and sigma [nb] x acceptance x L1 trigger efficiency
PAPER_FRACTION = {"wjets": 59.2, "qcd": 33.8, "dyjets": 6.7, "ttbar": 0.3}
PAPER_SIGMA_EFF = {"wjets": 58 * 0.556 * 0.68, "qcd": 1.6e5 * 0.0008 * 0.096, "dyjets": 20 * 0.16 * 0.77,
                   "ttbar": 0.7 * 0.37 * 0.49}
PAPER_IMPLIED = {k: 100 * v / sum(PAPER_SIGMA_EFF.values()) for k, v in PAPER_SIGMA_EFF.items()}  # tt 0.345 %


@pytest.fixture(scope="module")
def composition(tmp_path_factory):
    d = tmp_path_factory.mktemp("cocktail")
    t0 = time.time()
    fs = generate("sm13", n_events=N_EVENTS, out_dir=d / "gen", workers=2, progress=False)
    run_extraction(load_fileset(fs), ExtractOptions.from_conf(d / "hlf", feature_set="vae21",
                                                              executor="iterative", progress=False),
                   log=lambda m: None)
    df, report = load_hlf(d / "hlf")
    data = build_training_data(df, report, CocktailConfig(background=SM))
    elapsed = time.time() - t0
    comp = {k: 100 * v["fraction"] for k, v in data.composition.items()}
    eff = {k: report["datasets"][k]["written"] / report["datasets"][k]["events_in"] for k in SM}
    print(f"\nsm13, {N_EVENTS} events, generate + extract + cocktail in {elapsed:.1f} s")
    print(f"{'process':8s} {'ours %':>8s} {'paper %':>8s} {'Table-1 σ×ε %':>14s} {'ratio':>6s} {'our sel. eff':>12s}")
    for k in SM:
        print(f"{k:8s} {comp[k]:8.3f} {PAPER_FRACTION[k]:8.1f} {PAPER_IMPLIED[k]:14.3f} "
              f"{comp[k] / PAPER_FRACTION[k]:6.2f} {eff[k]:12.4f}")
    return comp, eff


@pytest.mark.parametrize("process", ["wjets", "qcd", "dyjets"])
def test_composition_within_15_percent_of_table_1(composition, process):
    comp, _ = composition
    assert comp[process] == pytest.approx(PAPER_FRACTION[process], rel=0.15), comp


def test_ttbar_fraction_within_factor_1p5(composition):
    """tt̄ is 0.3 % in the table's rounded column and 0.345 % from its own sigma x acceptance x trigger
    (0.32 % from its events/month): we compare with the latter within a factor 1.5 (ours is ~0.48 %:
    see docs/generator.md for why a CMS-like isolation keeps tt̄ leptons as efficient as W ones)."""
    comp, _ = composition
    ratio = comp["ttbar"] / PAPER_IMPLIED["ttbar"]
    assert 1 / 1.5 < ratio < 1.5, comp
    assert comp["ttbar"] / PAPER_FRACTION["ttbar"] < 1.75, comp


def test_selection_efficiencies_near_trigger_times_acceptance(composition):
    """Per-process efficiency of the generated sample (its fileset xsec already holds BR and filter) vs
    Table 1's acceptance x trigger (for tt̄ per leptonic event: the sample is generated with >= 1
    leptonic W, BR 0.543; for QCD the acceptance 0.08 % is the generator filter, in filter_eff)."""
    _, eff = composition
    assert eff["wjets"] == pytest.approx(0.556 * 0.68, rel=0.1)
    assert eff["qcd"] == pytest.approx(0.096, rel=0.2)
    assert eff["dyjets"] == pytest.approx(0.16 * 0.77, rel=0.15)
    assert 0.37 * 0.49 / 0.543 < eff["ttbar"] < 1.5 * 0.37 * 0.49 / 0.543

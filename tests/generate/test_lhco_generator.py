"""The LHC-Olympics-like samples of issue 18: Pythia's W' -> X Y with two new scalar resonances, the blind black
box (truth written apart, never in the files the pipeline reads) and the `lhco` selection, checked against the
generated ROOT files and the truth file independently."""
from __future__ import annotations

import awkward as ak
import numpy as np
import pandas as pd
import pytest
import uproot
import yaml

from sparkad.generate.config import GeneratorConfigError, load_preset


def events(hlf, name):
    gen = hlf.parent / "gen"
    doc = yaml.safe_load((gen / "fileset.yaml").read_text())
    return doc, uproot.concatenate([str(gen / f) + ":Events" for f in doc["datasets"][name]["files"]])


def test_wprime_decays_to_two_fat_jets_at_the_x_and_y_masses(lhco_hlf):
    d = pd.read_parquet(lhco_hlf / "wprime")
    q = pd.read_parquet(lhco_hlf / "qcd")
    heavy = d.mJ1 + d.dmJ
    # the lighter jet holds the Y (100 GeV), the heavier the X (500 GeV); mjj the W' (3.5 TeV): most events
    assert ((d.mJ1 > 60) & (d.mJ1 < 200)).mean() > 0.6
    assert ((heavy > 380) & (heavy < 650)).mean() > 0.6
    assert ((d.mjj > 3000) & (d.mjj < 3900)).mean() > 0.7
    assert d.tau21_J2.median() < q.tau21_J2.median() - 0.15  # a two-pronged X
    assert q.dmJ.median() < 0.5 * d.dmJ.median()


def test_the_black_box_keeps_its_truth_apart(lhco_hlf):
    doc, ev = events(lhco_hlf, "blackbox")
    assert not [k for k in ev.fields if k.startswith("Truth")]
    assert "blackbox" not in (doc["generator"].get("pythia") or {})  # the injected weight is not told either
    gen = lhco_hlf.parent / "gen"
    truth = pd.concat([pd.read_parquet(p) for p in sorted((gen / "truth").glob("blackbox_*.parquet"))])
    assert len(truth) == len(ev)
    for k in ("run", "luminosityBlock", "event"):
        assert (truth[k].to_numpy() == ev[k].to_numpy().astype(np.int64)).all()
    mix = yaml.safe_load((gen / "truth" / "blackbox_mix.yaml").read_text())["mix_xsec_pb"]
    p = mix["wprime"] / (mix["wprime"] + mix["qcd"])  # each event's component drawn with these weights
    k, n = int(truth.is_signal.sum()), len(truth)
    assert abs(k - n * p) < 4 * np.sqrt(n * p * (1 - p)) + 1
    assert set(truth.process[truth.is_signal]) == {113} and set(truth.process[~truth.is_signal]) == {5}
    # and the extraction never sees it: the HLF rows carry no truth, the label is "data"
    hlf = pd.read_parquet(lhco_hlf / "blackbox")
    assert set(hlf.label) == {"data"} and not [c for c in hlf.columns if "signal" in c.lower() or "truth" in c.lower()]


def test_lhco_selection_recounted_from_the_files(lhco_hlf):
    import json

    cut = json.loads((lhco_hlf / "_cutflow.json").read_text())
    for name in ("qcd", "wprime", "blackbox"):
        _, ev = events(lhco_hlf, name)
        fj = ev["FatJet_pt"][(ev["FatJet_pt"] > 30) & (abs(ev["FatJet_eta"]) < 2.5)]
        two = ak.num(fj) >= 2
        lead = ak.fill_none(ak.max(fj, axis=1), 0.0)
        want = int(ak.sum(two & (lead > 1200)))
        assert cut[name]["total"]["jet 1 pT > 1200 GeV"] == want
        hlf = pd.read_parquet(lhco_hlf / name)
        assert len(hlf) == want and (hlf.j1_pt > 1200).all()


@pytest.mark.parametrize("sample, message", [
    ({"process": "wprime_xy", "events": 10, "params": {"mass": 600.0, "mx": 500.0, "my": 100.0}},
     "needs 0 < mx, 0 < my and mx \\+ my < mass"),
    ({"process": "qcd_dijet", "events": 10, "blind": True}, "blind .* needs a data_like sample"),
])
def test_bad_lhco_samples_are_refused(sample, message):
    with pytest.raises(GeneratorConfigError, match=message):
        load_preset({"name": "x", "engine": "pythia_dijet", "sqrt_s": 13000, "samples": {"s": sample}})

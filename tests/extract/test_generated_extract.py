"""The generator's files run through the extraction processors (generator ↔ extractor contract)."""
import json

import numpy as np
import pandas as pd
import pytest

from sparkad.core.errors import FeatureUnavailableError
from sparkad.extract.run import ExtractOptions, run_extraction
from sparkad.extract.fileset import load_fileset
from sparkad.generate.api import generate


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    d = tmp_path_factory.mktemp("gen")
    return {"pf": generate("default", n_events=4000, out_dir=d / "pf", seed=7, progress=False),
            "exact": generate("default", n_events=2000, out_dir=d / "exact", seed=7, progress=False, exact_layout=True)}


def _run(fileset, out, **kw):
    return run_extraction(load_fileset(fileset), ExtractOptions.from_conf(out, progress=False, **kw), log=lambda m: None)


def test_generated_sample_gives_alad24_with_pf_information(generated, tmp_path):
    rep = _run(generated["pf"], tmp_path / "o", feature_set="alad24")
    df = pd.read_parquet(tmp_path / "o")
    feats = rep["features"]
    assert np.isfinite(df[feats].to_numpy()).all()
    assert (df.n_ch > 0).all() and (df.lep_iso_ch >= 0).all()
    assert set(df.label) == {"W", "Z", "ttbar", "data"}
    # MC weights: xsec * lumi / N per dataset
    fs = load_fileset(generated["pf"])
    for name, ds in fs.datasets.items():
        w = df[df.dataset == name].weight
        expect = 1.0 if ds.is_data else ds.xsec * fs.luminosity / (ds.sum_w or ds.n_gen)
        assert w.to_numpy() == pytest.approx(expect, rel=1e-6)
    # physics survives extraction: tt̄ has more jets and b-tags than W
    assert df[df.label == "ttbar"].NJ.mean() > df[df.label == "W"].NJ.mean() + 1
    assert df[df.label == "ttbar"].NB.mean() > df[df.label == "W"].NB.mean()
    # data-like events carry their run structure
    data = df[df.label == "data"]
    assert data.run.nunique() > 1 and data.luminosityBlock.nunique() > 5


def test_generated_exact_layout_cms2012_and_refusal(generated, tmp_path):
    rep = _run(generated["exact"], tmp_path / "ok", feature_set="cms2012")
    assert rep["totals"]["written"] > 0
    with pytest.raises(FeatureUnavailableError, match="cannot provide .*n_ch"):
        _run(generated["exact"], tmp_path / "no", feature_set="vae21")
    cut = json.loads((tmp_path / "ok" / "_cutflow.json").read_text())
    for name, d in cut.items():
        steps = list(d["total"].values())
        assert steps == sorted(steps, reverse=True)  # a cut-flow only ever decreases

"""Format detection and the NanoAOD v15 naming (PFMET_*, Jet_btagUParTAK4B); extraction on an
external Dask scheduler given by address."""
import awkward as ak
import numpy as np
import pytest
import uproot

from sparkad.extract.formats import describe, detect_format


def _v15_from(nano_dy, path):
    """nano_dy.root rewritten with the v15 names: MET_* → PFMET_*, btagDeepFlavB → btagUParTAK4B."""
    t = uproot.open(nano_dy)["Events"]
    keep = ["run", "luminosityBlock", "event", "genWeight", "MET_pt", "MET_phi"]
    out = {k: t[k].array(library="np") for k in keep}
    out["PFMET_pt"], out["PFMET_phi"] = out.pop("MET_pt"), out.pop("MET_phi")
    for coll, fields in (("Muon", ["pt", "eta", "phi", "mass", "charge", "pfRelIso03_all", "pfRelIso03_chg"]),
                         ("Electron", ["pt", "eta", "phi", "mass", "charge", "pfRelIso03_all", "pfRelIso03_chg"]),
                         ("Jet", ["pt", "eta", "phi", "mass", "btagDeepFlavB"])):
        arr = {f: t[f"{coll}_{f}"].array() for f in fields}
        if coll == "Jet":
            arr["btagUParTAK4B"] = arr.pop("btagDeepFlavB")
        out[coll] = ak.zip(arr)
    with uproot.recreate(path) as f:
        tree = f.mktree("Events", {k: (v.type if isinstance(v, ak.Array) else v.dtype) for k, v in out.items()},
                        counter_name=lambda c: "n" + c, field_name=lambda o, i: f"{o}_{i}")
        tree.extend(out)
    return path


def test_nanoaod_v15_names(cms_sample, tmp_path, extract):
    dy = cms_sample("nano_dy.root")
    v15 = _v15_from(dy, tmp_path / "v15.root")
    branches = uproot.open(v15)["Events"].keys()
    from sparkad.core.config import load_conf
    info = describe(detect_format("Events", branches), branches, load_conf("extract")["btag"])
    assert info.name == "nanoaod" and info.met_prefix == "PFMET" and info.btag_branch == "Jet_btagUParTAK4B"
    _, ref = extract([dy], tmp_path / "ref", feature_set="cms2012")
    _, got = extract([v15], tmp_path / "v15", feature_set="cms2012")
    # same events, same MET-based features; NB follows the UParT working point of conf/extract.yaml
    np.testing.assert_array_equal(got.event, ref.event)
    for f in ("MET", "MT", "met_par", "met_perp", "HT", "NJ", "lep_pt"):
        np.testing.assert_array_equal(got[f], ref[f])
    wp = load_conf("extract")["btag"]["nanoaod_v15"]["wp"]
    t = uproot.open(v15)["Events"]
    btag = t["Jet_btagUParTAK4B"].array()
    assert int(got.NB.sum()) <= int(ak.sum(btag > wp))


@pytest.mark.parametrize("fmt_name,expected", [
    (("Events", ["Jet_btag", "MET_pt"]), "cms2012"),
    (("Events", ["Jet_btagDeepFlavB", "PFCands_pdgId", "MET_pt"]), "pfnano"),
    (("Events", ["Jet_btagDeepFlavB", "MET_pt"]), "nanoaod"),
    (("Delphes", ["Jet/Jet.PT"]), "delphes"),
])
def test_detect_format(fmt_name, expected):
    assert detect_format(*fmt_name) == expected
    with pytest.raises(ValueError, match="cannot detect"):
        detect_format("Events", ["x", "y"])


def test_extraction_on_a_dask_scheduler_address(cms2012_file, tmp_path):
    import subprocess
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None, processes=True) as cluster:
        r = subprocess.run(["sparkad", "extract", str(cms2012_file), "--out", str(tmp_path / "o"), "-q",
                            "--scheduler", cluster.scheduler_address], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    import json
    rep = json.loads((tmp_path / "o" / "_report.json").read_text())
    assert rep["executor"] == "dask" and rep["totals"]["written"] == 2

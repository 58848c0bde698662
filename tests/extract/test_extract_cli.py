"""`sparkad extract` as a user runs it: filesets, weights, golden JSON, bad input, skip and report."""
import json
import shutil
import subprocess
import sys

import awkward as ak
import numpy as np
import pandas as pd
import pytest

from rootfiles import write_corrupt, write_empty_tree, write_no_keys, write_other_tree, write_root, write_truncated


def sparkad(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "sparkad.cli", *map(str, args)], capture_output=True, text=True, cwd=cwd)


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    from rootfiles import events_arrays
    return {
        "corrupt": write_corrupt(d / "corrupt.root"),
        "no keys": write_no_keys(d / "nokeys.root"),
        "no tree 'Events'": write_other_tree(d / "othertree.root"),
        "is empty": write_empty_tree(d / "empty.root"),
        "missing branch": write_root(d / "nolumi.root", events_arrays(drop=("luminosityBlock",))),
        "file not found": d / "does_not_exist.root",
        "truncated": write_truncated(d / "truncated.root"),
        "wrong shape": write_root(d / "jagged_met.root", _with(MET_pt=ak.Array([[x] for x in events_arrays()["MET_pt"]]))),
        "expected floating point": write_root(d / "int_pt.root", _with(Muon=ak.with_field(
            events_arrays()["Muon"], ak.values_astype(events_arrays()["Muon"].pt, np.int32), "pt"))),
    }


def _with(**branches):
    from rootfiles import events_arrays
    return {**events_arrays(), **branches}


@pytest.mark.parametrize("case", ["corrupt", "no keys", "no tree 'Events'", "is empty", "missing branch", "file not found",
                                  "truncated", "wrong shape", "expected floating point"])
def test_bad_input_stops_with_one_line_naming_file(case, bad_files, tmp_path):
    path = bad_files[case]
    r = sparkad("extract", path, "--out", tmp_path / "o", "-q")
    assert r.returncode == 1
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith(f"error: {path}")
    key = {"corrupt": "not a readable ROOT file", "no keys": "no keys"}.get(case, case)
    assert key in lines[0]
    assert "Traceback" not in r.stderr
    if case == "missing branch":
        assert "luminosityBlock" in lines[0]
    assert not (tmp_path / "o" / "_report.json").exists()


def test_skip_bad_files_reports_and_reconciles(bad_files, cms2012_file, tmp_path):
    out = tmp_path / "o"
    r = sparkad("extract", cms2012_file, *bad_files.values(), "--out", out, "--skip-bad-files", "-q", "--dataset", "mix")
    assert r.returncode == 0, r.stderr
    report = json.loads((out / "_report.json").read_text())
    skipped = {s["file"]: s for s in report["files_skipped"]}
    assert set(skipped) == {str(p.resolve()) for p in bad_files.values()}
    for p in bad_files.values():
        assert str(p.resolve()) in r.stderr  # listed on the console too
    assert skipped[str(bad_files["missing branch"].resolve())]["entries"] == 4
    d = report["datasets"]["mix"]
    assert d["events_in"] == d["written"] + d["cut"] == 4
    # the files without luminosityBlock, with a jagged MET and with integer muon pT hold 4 events each
    assert d["events_in_skipped_files"] == 12
    assert report["complete"] is True
    assert len(pd.read_parquet(out / "mix")) == d["written"] == 2


def test_real_missing_luminosityblock_and_empty_files(cms_sample, tmp_path):
    r = sparkad("extract", cms_sample("missing_luminosityBlock.root"), "--out", tmp_path / "o", "-q")
    assert r.returncode == 1 and "missing branch luminosityBlock" in r.stderr and r.stderr.count("\n") == 1
    r = sparkad("extract", cms_sample("nano_dy_empty.root"), cms_sample("nano_dy.root"), "--out", tmp_path / "o",
                "--skip-bad-files", "-q", "--dataset", "dy")
    assert r.returncode == 0, r.stderr
    rep = json.loads((tmp_path / "o" / "_report.json").read_text())
    assert rep["files_skipped"][0]["reason"] == "tree 'Events' is empty (0 entries)"
    assert rep["datasets"]["dy"]["events_in"] == 40


def test_special_tree_file_reads_events(cms_sample, tmp_path):
    r = sparkad("extract", cms_sample("nano_dy_SpecialTree.root"), "--out", tmp_path / "o", "-q")
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "o" / "_report.json").read_text())["totals"]["events_in"] == 40


def test_fileset_weights_lumimask_and_outputs(cms_sample, cms2012_file, tmp_path):
    shutil.copy(cms2012_file, tmp_path / "data.root")
    shutil.copy(cms_sample("nano_dy.root"), tmp_path / "dy.root")
    (tmp_path / "golden.json").write_text(json.dumps({"194050": [[1, 10]]}))  # lumi 11 of run 194050 is not certified
    (tmp_path / "fs.yaml").write_text(
        "luminosity: 4400.0\n"
        "datasets:\n"
        "  dy:\n    files: [dy.root]\n    xsec: 6000.0\n    label: DY\n"
        "  dy_ngen:\n    files: [dy.root]\n    xsec: 6000.0\n    n_gen: 1.0e6\n"
        "  singlemu:\n    files: ['data*.root']\n    is_data: true\n    golden_json: golden.json\n")
    out = tmp_path / "out"
    r = sparkad("extract", "--fileset", tmp_path / "fs.yaml", "--out", out, "-q")
    assert r.returncode == 0, r.stderr
    report = json.loads((out / "_report.json").read_text())
    cutflow = json.loads((out / "_cutflow.json").read_text())
    import uproot
    runs = uproot.open(tmp_path / "dy.root")["Runs"].arrays(library="np")
    genw = uproot.open(tmp_path / "dy.root")["Events"]["genWeight"].array(library="np").astype("f8")
    sumw = runs["genEventSumw_"].sum()
    dy = pd.read_parquet(out / "dy")
    assert report["datasets"]["dy"]["weighting"]["normalisation"] == "sum of Runs.genEventSumw"
    expected = genw[[list(uproot.open(tmp_path / "dy.root")["Events"]["event"].array(library="np")).index(e)
                     for e in dy.event]] * 6000.0 * 4400.0 / sumw
    assert dy.weight.to_numpy() == pytest.approx(expected, rel=1e-9)
    assert set(dy.label) == {"DY"} and set(dy.dataset) == {"dy"}
    assert pd.read_parquet(out / "dy_ngen").weight.to_numpy() == pytest.approx(6000.0 * 4400.0 / 1e6)
    data = pd.read_parquet(out / "singlemu")
    assert list(data.event) == [1001] and (data.weight == 1.0).all() and set(data.label) == {"data"}
    steps = cutflow["singlemu"]["total"]
    assert steps["all"] == 4 and steps["certified lumi sections"] == 1  # lumi 11 and run 194051 masked
    assert report["totals"]["events_in"] == report["totals"]["written"] + report["totals"]["cut"]
    assert not (out / "_staging").exists()


def test_broken_configs_give_one_line(tmp_path, cms2012_file):
    (tmp_path / "bad.yaml").write_text("datasets:\n  x:\n    files: [a.root]\n    is_data: maybe\n")
    r = sparkad("extract", "--fileset", tmp_path / "bad.yaml", "--out", tmp_path / "o")
    assert r.returncode == 1 and "is_data: expected true or false" in r.stderr and "Traceback" not in r.stderr
    (tmp_path / "broken.yaml").write_text("datasets: [unclosed\n")
    r = sparkad("extract", "--fileset", tmp_path / "broken.yaml", "--out", tmp_path / "o")
    assert r.returncode == 1 and "invalid YAML" in r.stderr
    r = sparkad("extract", cms2012_file, "--out", tmp_path / "o", "--features", "HT,nonsense")
    assert r.returncode == 1 and "nonsense" in r.stderr
    r = sparkad("extract", cms2012_file, "--out", tmp_path / "o", "--selection", "nope")
    assert r.returncode == 1 and "unknown selection 'nope'" in r.stderr


def test_rerun_replaces_output_idempotently(cms2012_file, tmp_path):
    out = tmp_path / "o"
    for _ in range(2):
        r = sparkad("extract", cms2012_file, "--out", out, "-q", "--dataset", "d")
        assert r.returncode == 0, r.stderr
    files = sorted(p.name for p in (out / "d").iterdir())
    assert len(files) == 1 and files[0].endswith(".parquet")
    assert len(pd.read_parquet(out / "d")) == 2


def test_inputs_that_would_corrupt_outputs_are_refused(cms2012_file, tmp_path):
    """Names that are not plain folder names, files listed twice, non-finite numbers, a malformed
    golden JSON: one line each, nothing written outside OUT, nothing deleted."""
    parent = tmp_path / "parent"
    (parent / "out").mkdir(parents=True)
    (parent / "precious.txt").write_text("keep me")
    r = sparkad("extract", cms2012_file, "--dataset", "..", "--out", parent / "out", "-q")
    assert r.returncode == 1 and "not a plain name" in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert (parent / "precious.txt").read_text() == "keep me" and (parent / "out").is_dir()

    def fileset(text, name="fs.yaml"):
        (tmp_path / name).write_text(text)
        return sparkad("extract", "--fileset", tmp_path / name, "--out", tmp_path / "o", "-q")

    for name in ('""', "_staging", "a/b", "'../escape'"):
        r = fileset(f"datasets:\n  {name}:\n    files: [{cms2012_file}]\n")
        assert r.returncode == 1 and "not a plain name" in r.stderr and "Traceback" not in r.stderr, (name, r.stderr)
    r = fileset(f"datasets:\n  a:\n    files: [{cms2012_file}, {cms2012_file.parent}/*.root]\n")
    assert r.returncode == 1 and "is listed twice" in r.stderr
    r = fileset(f"luminosity: 10\ndatasets:\n  a:\n    files: [{cms2012_file}]\n    xsec: .inf\n    n_gen: 10\n")
    assert r.returncode == 1 and "xsec: must be a finite number" in r.stderr
    (tmp_path / "golden.json").write_text('{"194')
    r = fileset(f"datasets:\n  d:\n    files: [{cms2012_file}]\n    is_data: true\n    golden_json: golden.json\n")
    assert r.returncode == 1 and r.stderr.startswith(f"error: {tmp_path / 'golden.json'}: not a readable golden JSON")
    assert not (tmp_path / "o" / "_report.json").exists()


def test_non_finite_features_are_reported_not_silently_cut(tmp_path):
    from rootfiles import events_arrays

    arrays = events_arrays()
    arrays["MET_pt"] = np.full(len(arrays["MET_pt"]), np.inf, np.float32)  # corrupt input
    path = write_root(tmp_path / "inf_met.root", arrays)
    r = sparkad("extract", path, "--out", tmp_path / "o", "-q", "--dataset", "d")
    assert r.returncode == 0, r.stderr
    report = json.loads((tmp_path / "o" / "_report.json").read_text())
    d = report["datasets"]["d"]
    assert d["selected"] == 2 and d["written"] == 0 and d["dropped_non_finite"] == 2
    assert "warning: dataset d: 2 selected event(s) dropped because a feature or the weight is NaN or inf" in r.stderr

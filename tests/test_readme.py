"""The README's commands work as written: the main job (minus its pip install) and the example fileset."""
import json
import re
import subprocess
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def _bash_blocks():
    return re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)


def test_ci_runs_exactly_the_readme_test_command():
    test_cmd = _bash_blocks()[1].strip()
    assert "pytest" in test_cmd
    assert test_cmd in (ROOT / ".ci" / "run").read_text().splitlines()


def test_readme_main_job_runs(tmp_path):
    main_cmd = _bash_blocks()[0].strip()
    assert main_cmd.startswith("python -m pip install -e . && ")
    job = main_cmd.split(" && ", 1)[1]
    r = subprocess.run(["bash", "-c", job], cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    report = json.loads((tmp_path / "demo/hlf/_report.json").read_text())
    assert report["complete"] and report["executor"] == "dask" and report["feature_set"] == "alad24"
    t = report["totals"]
    assert t["events_in"] == t["written"] + t["cut"] and t["written"] > 0
    labels = set(pd.read_parquet(tmp_path / "demo/hlf").label)
    assert {"W", "Z", "ttbar", "data"} <= labels


def test_example_fileset(tmp_path, cms_sample):
    cms_sample("nano_dy.root")
    r = subprocess.run(["sparkad", "extract", "--fileset", str(ROOT / "conf/filesets/example.yaml"), "--out",
                        str(tmp_path / "o"), "-q"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    rep = json.loads((tmp_path / "o/_report.json").read_text())
    assert rep["datasets"]["dy"]["weighting"]["normalisation"] == "sum of Runs.genEventSumw"
    assert rep["datasets"]["ttbar"]["weighting"]["normalisation"] == "n_gen from fileset"

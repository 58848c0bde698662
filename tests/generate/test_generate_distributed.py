"""`sparkad generate` on every executor: the same preset and seed give the same branch arrays (read back
with uproot: the ROOT files themselves carry UUIDs) and the same fileset whether the files are written
by one process, a fork pool, a real Spark session (local[2]) or a real Dask LocalCluster of 2 worker
processes; a task that fails is one line naming its file."""
from __future__ import annotations

import awkward as ak
import pytest
import uproot
import yaml
from click.testing import CliRunner

from sparkad.core.errors import SparkadError
from sparkad.generate.api import generate
from sparkad.generate.cli import generate as generate_cmd

RUNS = {"n_runs": 2, "lumis_per_run": [5, 5], "runs_per_fill": 2}


def parametric_cfg():
    """Two files per sample (max_events_per_file), a data-like mix with runs: 4 tasks."""
    return {"name": "dist", "seed": 21, "max_events_per_file": 150, "chunk_size": 100, "samples": {
        "ttbar": {"process": "ttbar", "events": 300},
        "data": {"data_like": True, "events": 300, "mix": ["wjets", "dyjets", "ttbar"], "runs": RUNS}}}


def pythia_cfg():
    """Pythia engine: two MC samples (dyjets in 2 files) first, then the data mix weighted by their cross
    sections (the two phases), a few dozen events."""
    return {"name": "dist_pythia", "engine": "pythia", "sqrt_s": 8000, "seed": 4, "max_events_per_file": 15,
            "samples": {"dyjets": {"process": "dyjets", "events": 30},
                        "ttbar": {"process": "ttbar", "events": 12},
                        "data": {"data_like": True, "events": 12, "mix": ["dyjets", "ttbar"], "runs": RUNS}}}


def read(fs):
    doc = yaml.safe_load(fs.read_text())
    arrays = {name: [uproot.open(fs.parent / f)["Events"].arrays() for f in d["files"]]
              for name, d in doc["datasets"].items()}
    return arrays, doc


def assert_same(a, b):
    (xa, da), (xb, db) = a, b
    assert da == db  # files, n_gen, sum_w, xsec (Pythia's), generator block
    for name in xa:
        assert len(xa[name]) == len(xb[name])
        for p, q in zip(xa[name], xb[name], strict=True):
            assert len(p) == len(q) > 0 and p.fields == q.fields
            for f in p.fields:
                assert ak.array_equal(p[f], q[f]), (name, f)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return read(generate(parametric_cfg(), out_dir=tmp_path_factory.mktemp("ref"), progress=False))


@pytest.fixture(scope="module")
def pythia_reference(tmp_path_factory):
    return read(generate(pythia_cfg(), out_dir=tmp_path_factory.mktemp("pyref"), progress=False))


@pytest.fixture(scope="module")
def dask_cluster():
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=40) as cluster:
        yield cluster


def test_local_pool_of_two_gives_the_same_files(reference, tmp_path):
    assert len(reference[1]["datasets"]["ttbar"]["files"]) == 2
    assert_same(reference, read(generate(parametric_cfg(), out_dir=tmp_path, progress=False, workers=2)))


def test_spark_gives_the_same_files(reference, spark, tmp_path):
    fs = generate(parametric_cfg(), out_dir=tmp_path, progress=False, executor="spark", workers=2)
    assert_same(reference, read(fs))


def test_dask_local_cluster_gives_the_same_files(reference, tmp_path):
    """executor dask without a scheduler: its own LocalCluster of `workers` processes."""
    fs = generate(parametric_cfg(), out_dir=tmp_path, progress=False, executor="dask", workers=2)
    assert_same(reference, read(fs))


def test_pythia_two_phases_same_files_on_spark_and_dask(pythia_reference, spark, dask_cluster, tmp_path):
    doc = pythia_reference[1]
    assert len(doc["datasets"]["dyjets"]["files"]) == 2 and set(doc["generator"]["pythia"]) == {"dyjets", "ttbar", "data"}
    assert_same(pythia_reference, read(generate(pythia_cfg(), out_dir=tmp_path / "spark", progress=False,
                                                executor="spark")))
    assert_same(pythia_reference, read(generate(pythia_cfg(), out_dir=tmp_path / "dask", progress=False,
                                                executor="dask", scheduler=dask_cluster.scheduler_address)))


def _blocked(tmp_path):
    """An output folder where the second ttbar file cannot be written (a folder holds its name)."""
    (tmp_path / "ttbar_0001.root").mkdir(parents=True)
    return tmp_path


@pytest.mark.parametrize("executor", ["spark", "dask"])
def test_a_failed_task_is_one_line_naming_its_file(executor, spark, dask_cluster, tmp_path):
    kw = {"scheduler": dask_cluster.scheduler_address} if executor == "dask" else {}
    with pytest.raises(SparkadError) as e:
        generate(parametric_cfg(), out_dir=_blocked(tmp_path), progress=False, executor=executor, **kw)
    msg = str(e.value)
    assert msg.startswith(f"{tmp_path / 'ttbar_0001.root'}: generation failed (IsADirectoryError"), msg
    assert "\n" not in msg and "Traceback" not in msg and "java" not in msg.lower()
    assert not (tmp_path / "fileset.yaml").exists()


def test_cli_executor_options(spark, tmp_path):
    r = CliRunner().invoke(generate_cmd, ["--preset", "default", "--events", "40", "--out", str(tmp_path / "ok"),
                                          "--quiet", "--master", "local[2]"])  # --master: executor spark
    assert r.exit_code == 0, r.output
    assert (tmp_path / "ok" / "fileset.yaml").exists()
    r = CliRunner().invoke(generate_cmd, ["--events", "40", "--out", str(tmp_path / "x"), "--executor", "local",
                                          "--scheduler", "tcp://127.0.0.1:1"])
    assert r.exit_code == 2 and "--scheduler does not go with --executor local" in r.output
    r = CliRunner().invoke(generate_cmd, ["--events", "40", "--out", str(tmp_path / "y"), "--master", "local[2]",
                                          "--scheduler", "tcp://127.0.0.1:1"])
    assert r.exit_code == 2 and "exclude each other" in r.output
    cfg = tmp_path / "p.yaml"
    cfg.write_text(yaml.safe_dump(parametric_cfg()))
    r = CliRunner().invoke(generate_cmd, ["--preset", str(cfg), "--out", str(_blocked(tmp_path / "bad")), "--quiet",
                                          "--executor", "spark"])
    assert r.exit_code == 1, r.output
    line = r.output.strip()
    assert line.startswith(f"error: {tmp_path / 'bad' / 'ttbar_0001.root'}: generation failed") and "\n" not in line

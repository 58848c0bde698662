"""The built wheel, installed into a fresh virtual environment with no checkout on any path, runs the
whole chain (issue 14): generate → extract → train → score on a Spark local-cluster whose executors
import the installed package → monitor → report, from a folder that is not the checkout.

The environment is fresh for sparkad only: its dependencies come from this test's environment
(added as a plain path, so that environment's own .pth files, among them an editable sparkad's
finder, are not processed), which keeps the test to a few minutes without a network."""
import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

EXECUTOR_CHECK = """
import os, sys
os.environ["PYSPARK_PYTHON"] = sys.executable
from pyspark.sql import SparkSession
spark = SparkSession.builder.master("local-cluster[2,1,1024]").config("spark.ui.enabled", "false").getOrCreate()
def where(_):
    import sparkad, sparkad.model.dense as d
    yield (sparkad.__file__, d.__file__, sys.executable)
print(sorted(set(spark.sparkContext.parallelize(range(4), 4).mapPartitions(where).collect())))
spark.stop()
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)]
    try:
        import setuptools  # noqa: F401
        cmd.insert(5, "--no-build-isolation")  # no download of a build backend when one is installed
    except ImportError:
        pass
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=out)
    assert r.returncode == 0, r.stderr[-3000:]
    (whl,) = out.glob("sparkad-*.whl")
    return whl


def test_wheel_holds_every_module_and_the_default_configuration(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    want = {p.relative_to(ROOT).as_posix() for p in (ROOT / "sparkad").rglob("*.py")}
    want |= {p.relative_to(ROOT).as_posix() for p in (ROOT / "sparkad" / "conf").rglob("*.yaml")}
    assert want <= names, sorted(want - names)
    assert "sparkad/conf/generate/default.yaml" in names and "sparkad/model/dense.py" in names


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory):
    """A new virtual environment with the wheel installed (no pip of its own, no editable finder)."""
    d = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(d)], check=True, timeout=300)
    py = d / "bin" / "python"
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    # this environment's packages as plain paths: dependencies, never this checkout's sparkad; every
    # site-packages folder on the path (a venv made with --system-site-packages, as on an image whose Python
    # comes with packages, finds some dependencies outside its own purelib)
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    deps |= {p for p in sys.path if Path(p).name in ("site-packages", "dist-packages") and Path(p).is_dir()}
    (site / "zz_dependencies.pth").write_text("\n".join(sorted(deps)) + "\n")
    r = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "-q", str(wheel)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return d


def _env(venv):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SPARKAD_CONF", "PYSPARK_PYTHON",
                                                            "PYSPARK_DRIVER_PYTHON", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


def _run(venv, cwd, *args, timeout=900):
    r = subprocess.run([str(venv / "bin" / args[0]), *args[1:]], cwd=cwd, env=_env(venv), capture_output=True,
                       text=True, timeout=timeout)
    assert r.returncode == 0, f"{' '.join(args)}\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}"
    assert "Traceback" not in r.stderr
    return r


def test_installed_wheel_runs_the_whole_chain(venv, tmp_path):
    from sparkad.core.spark import check_java
    from sparkad.core.errors import SparkadError
    try:
        check_java()
    except SparkadError as e:
        pytest.skip(str(e))
    work = tmp_path / "work"
    work.mkdir()
    site = subprocess.run([str(venv / "bin" / "python"), "-c", "import sparkad, sparkad.core.config as c; "
                           "print(sparkad.__file__); print(c.conf_file('train.yaml'))"],
                          cwd=work, env=_env(venv), capture_output=True, text=True, check=True).stdout.split()
    assert all(Path(p).is_relative_to(venv) for p in site), site  # the installed package and its defaults
    assert not any(Path(p).is_relative_to(ROOT) for p in site)

    _run(venv, work, "sparkad", "generate", "--preset", "default", "--events", "6000", "--out", "gen", "--seed", "4",
         "--quiet")
    _run(venv, work, "sparkad", "extract", "--fileset", "gen/fileset.yaml", "--out", "hlf", "--features", "alad24",
         "--executor", "futures", "--workers", "2")
    _run(venv, work, "sparkad", "train", "--model", "ae", "--hlf", "hlf", "--out", "model", "--epochs", "1",
         "--batch-size", "100")
    r = _run(venv, work, "sparkad", "score", "--hlf", "hlf", "--model", "model", "--out", "scored", "--master",
             "local-cluster[2,1,1024]", "--select-fraction", "0.01")
    rep = json.loads((work / "scored" / "_score_report.json").read_text())
    assert rep["complete"] and rep["total_events"] > 0, r.stdout
    _run(venv, work, "sparkad", "monitor", "--scores", "scored", "--out", "monitor")
    assert (work / "monitor" / "runs.parquet").is_file()
    _run(venv, work, "sparkad", "report", "--scores", "scored", "--monitor", "monitor")
    assert (work / "scored" / "report.html").stat().st_size > 10_000
    assert "0.1.0" == json.loads((work / "model" / "model.json").read_text())["code_version"]  # no checkout

    # the executors of a local-cluster import the installed package (not a checkout), with the same Python
    out = _run(venv, work, "python", "-c", EXECUTOR_CHECK).stdout.strip().splitlines()[-1]
    assert str(venv) in out and str(ROOT) not in out, out

"""Shared fixtures: the real CMS sample files of ../shared (skipped when absent) and small files
that the tests write themselves."""
from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
# the process set-up of the sparkad command (numba cache folder, ISA-L zlib), before any kernel is imported
from sparkad.core.runtime import setup_process  # noqa: E402

setup_process()
# commands run by the tests (sparkad ...) come from the Python running pytest, even without an activated venv
os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")
warnings.filterwarnings("ignore", message=".*Missing cross-reference.*")

SAMPLES = Path(os.environ.get("SPARKAD_SAMPLES", Path(__file__).resolve().parents[2] / "shared" / "data" / "cms-samples"))


@pytest.fixture(scope="session")
def cms_sample():
    """Path of a file in ../shared/data/cms-samples, or a skip naming what is missing."""

    def get(name: str) -> Path:
        p = SAMPLES / name
        if not p.exists():
            pytest.skip(f"real CMS sample {p} not available (../shared absent)")
        return p

    return get


@pytest.fixture(scope="session")
def cms2012_file(tmp_path_factory):
    """The hand-made events of tests/rootfiles.py in the CMS-2012 layout with sparkad's PF extras."""
    from rootfiles import write_root
    return write_root(tmp_path_factory.mktemp("c12") / "cms2012_pf.root")


@pytest.fixture(scope="session")
def cms2012_exact_file(tmp_path_factory):
    """The same events in the exact real 2012 layout (no PF information)."""
    from rootfiles import events_arrays, write_root
    return write_root(tmp_path_factory.mktemp("c12x") / "cms2012_exact.root", events_arrays(extras=False))


def extract_files(paths, out, *, dataset="ds", is_data=False, label=None, fmt=None, **opts):
    """Run the real extraction (coffea Runner) on files; return (report, pandas DataFrame of all rows)."""
    import pandas as pd

    from sparkad.extract.run import ExtractOptions, run_extraction
    from sparkad.extract.fileset import DatasetSpec, Fileset

    fs = Fileset({dataset: DatasetSpec(name=dataset, files=[str(p) for p in paths], is_data=is_data,
                                       label=label or dataset, format=fmt)})
    opts.setdefault("progress", False)
    report = run_extraction(fs, ExtractOptions.from_conf(out, **opts), log=lambda m: None)
    df = pd.read_parquet(Path(out) / dataset)
    return report, df.sort_values(["run", "luminosityBlock", "event"]).reset_index(drop=True)


@pytest.fixture
def extract():
    return extract_files


@pytest.fixture(scope="session")
def generated_hlf(tmp_path_factory):
    """HLF (alad24) of a small generated 8 TeV sample: W, DY, tt̄ MC and a data-like mix."""
    from sparkad.extract.run import ExtractOptions, run_extraction
    from sparkad.extract.fileset import load_fileset
    from sparkad.generate.api import generate

    d = tmp_path_factory.mktemp("genhlf")
    fileset = generate("default", n_events=30000, out_dir=d / "gen", seed=3, progress=False)
    run_extraction(load_fileset(fileset), ExtractOptions.from_conf(d / "hlf", feature_set="alad24", progress=False),
                   log=lambda m: None)
    return d / "hlf"


@pytest.fixture(scope="session")
def dijet_hlf(tmp_path_factory):
    """A small 13 TeV dijet sample of the Pythia dijet engine (QCD, G -> WW at 2 TeV, a data-like mix with
    the signal injected), extracted with --analysis dijet."""
    from sparkad.extract.run import ExtractOptions, run_extraction
    from sparkad.extract.fileset import load_fileset
    from sparkad.generate.api import generate

    d = tmp_path_factory.mktemp("dijethlf")
    cfg = {"name": "pytest_dijet_hlf", "engine": "pythia_dijet", "sqrt_s": 13000, "seed": 11, "luminosity": 1000.0,
           "samples": {"qcd": {"process": "qcd_dijet", "events": 400},
                       "g_ww": {"process": "rsg_ww", "events": 80, "params": {"mass": 2000.0}},
                       "data": {"data_like": True, "events": 300, "mix": {"qcd": None, "g_ww": 20.0},
                                "runs": {"n_runs": 3, "lumis_per_run": [5, 10]}}}}
    fileset = generate(cfg, out_dir=d / "gen", progress=False)
    run_extraction(load_fileset(fileset), ExtractOptions.from_conf(d / "hlf", analysis="dijet", progress=False),
                   log=lambda m: None)
    return d / "hlf"


@pytest.fixture(scope="session")
def lhco_hlf(tmp_path_factory):
    """A small LHC-Olympics-like sample (issue 18): QCD (pT-hat > 1 TeV), W' (3.5 TeV) -> X (500) Y (100) and a
    blind black box with the W' injected (~15 % of its events; truth in gen/truth/), anti-kT R = 1.0,
    extracted with --selection lhco."""
    from sparkad.extract.run import ExtractOptions, run_extraction
    from sparkad.extract.fileset import load_fileset
    from sparkad.generate.api import generate

    d = tmp_path_factory.mktemp("lhcohlf")
    cfg = {"name": "pytest_lhco", "engine": "pythia_dijet", "sqrt_s": 13000, "seed": 21, "luminosity": 1000.0,
           "samples": {"qcd": {"process": "qcd_dijet", "events": 900, "params": {"pt_hat_min": 1000.0, "jet_r": 1.0}},
                       "wprime": {"process": "wprime_xy", "events": 300, "params": {"jet_r": 1.0}},
                       "blackbox": {"data_like": True, "blind": True, "events": 900,
                                    "mix": {"qcd": None, "wprime": 2.0},
                                    "runs": {"n_runs": 3, "lumis_per_run": [5, 10]}}}}
    fileset = generate(cfg, out_dir=d / "gen", workers=2, progress=False)
    run_extraction(load_fileset(fileset), ExtractOptions.from_conf(d / "hlf", analysis="dijet", selection="lhco",
                                                                   progress=False), log=lambda m: None)
    return d / "hlf"


@pytest.fixture(scope="session")
def jet_model(dijet_hlf, tmp_path_factory):
    """A small per-jet VAE (3 epochs) trained on the QCD sideband of dijet_hlf: (model dir, model.json)."""
    import yaml

    from sparkad.train.jet_vae import train_jet_vae

    d = tmp_path_factory.mktemp("jetvae")
    cfg = d / "small.yaml"
    cfg.write_text(yaml.safe_dump({"model": {"filters": [4, 8], "dense": 16, "latent": 4},
                                   "training": {"epochs": 3, "batch_size": 64}}))
    doc = train_jet_vae(dijet_hlf, d / "model", config_file=cfg, progress=False, log=lambda m: None)
    return d / "model", doc


@pytest.fixture(scope="session")
def spark():
    """One local SparkSession for the whole test session (skipped, with the reason, without Java)."""
    from sparkad.core.errors import SparkadError
    from sparkad.core.spark import check_java, get_session
    try:
        check_java()
    except SparkadError as e:
        pytest.skip(str(e))
    session = get_session("sparkad-tests", "local[2]", {"spark.ui.enabled": "false",
                                                        "spark.sql.shuffle.partitions": "4"})
    yield session
    session.stop()


@pytest.fixture(scope="session")
def trained_ae(generated_hlf, tmp_path_factory):
    """A small AE trained on the generated W+Z cocktail (tt̄ stays an anomaly)."""
    from sparkad.train.api import train_from_config
    d = tmp_path_factory.mktemp("ae")
    cfg = d / "train.yaml"
    cfg.write_text("cocktail: {background: [wjets, dyjets]}\ntraining: {threads: 1}\n")
    train_from_config("ae", generated_hlf, d / "model", config_file=cfg, epochs=3, batch_size=128, progress=False)
    return d / "model"


def _train_small(kind, generated_hlf, tmp_path_factory, **overrides):
    from sparkad.train.api import train_from_config
    d = tmp_path_factory.mktemp(kind)
    cfg = d / "train.yaml"
    cfg.write_text("cocktail: {background: [wjets, dyjets]}\ntraining: {threads: 1}\n")
    train_from_config(kind, generated_hlf, d / "model", config_file=cfg, progress=False, log=lambda m: None, **overrides)
    return d / "model"


@pytest.fixture(scope="session")
def trained_alad(generated_hlf, tmp_path_factory):
    """A small ALAD (one epoch) on the generated W+Z cocktail."""
    return _train_small("alad", generated_hlf, tmp_path_factory, epochs=1, batch_size=500)


@pytest.fixture(scope="session")
def trained_vae(generated_hlf, tmp_path_factory):
    """A small VAE (two epochs) on the generated W+Z cocktail."""
    return _train_small("vae", generated_hlf, tmp_path_factory, epochs=2, batch_size=500)

"""Bad training input gives one line naming the file or the configuration key, before any training:
HLF Parquet without the columns the cocktail needs, corrupt files, NaN/inf weights or features (also
when they fall only in the validation split), wrong-typed or misspelled train configuration."""
import json
import subprocess

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from sparkad.train.cocktail import CocktailConfig, build_training_data, load_hlf
from sparkad.core.errors import ConfigError, InputFileError, SparkadError
from sparkad.train.api import resolve_config, train_from_config
from sparkad.train.loop import TrainConfig

FEATURES = ["HT", "MET", "n_mu"]
DATASETS = {"wjets": ("W", 60.0), "dyjets": ("Z", 8.0), "data": ("data", 1.0)}


def _table(name, n, seed):
    rng = np.random.default_rng(seed)
    label, w = DATASETS[name]
    return pa.table({"dataset": [name] * n, "label": [label] * n, "weight": np.full(n, w),
                     "event": np.arange(n), "HT": rng.gamma(3, 40, n).astype("f4"),
                     "MET": rng.exponential(30, n).astype("f4"), "n_mu": rng.integers(0, 3, n).astype("f4")})


@pytest.fixture
def tiny_hlf(tmp_path):
    """A minimal HLF folder: _report.json and two Parquet files (two row groups each) per dataset."""
    hlf = tmp_path / "hlf"
    datasets = {}
    for k, name in enumerate(DATASETS):
        (hlf / name).mkdir(parents=True)
        for i in range(2):
            pq.write_table(_table(name, 200, 10 * k + i), hlf / name / f"{name}_{i}.parquet", row_group_size=100)
        datasets[name] = {"label": DATASETS[name][0], "is_data": name == "data", "written": 400}
    (hlf / "_report.json").write_text(json.dumps({"complete": True, "features": FEATURES, "datasets": datasets}))
    return hlf


def _edit(hlf, name, fn, i=0):
    f = hlf / name / f"{name}_{i}.parquet"
    pq.write_table(fn(pq.read_table(f)), f)
    return f


def _train_cfg(tmp_path, **sections):
    p = tmp_path / "train.yaml"
    base = {"cocktail": {"background": ["wjets", "dyjets"]}, "training": {"threads": 1},
            "models": {"ae": {"model": {"hidden": [8], "latent": 2}}}}
    for k, v in sections.items():
        base[k] = {**base.get(k, {}), **v}
    p.write_text(yaml.safe_dump(base))
    return p


def test_tiny_hlf_loads_trains_and_shards(tiny_hlf, tmp_path):
    df, report = load_hlf(tiny_hlf)
    assert len(df) == 1200 and set(df.dataset) == set(DATASETS)
    for n in (2, 3, 8, 50):  # by row group (8 per dataset) or, with more workers, by row
        parts = [load_hlf(tiny_hlf, shard=(i, n))[0] for i in range(n)]
        keys = sorted(k for p in parts for k in zip(p.dataset, p.event, p.HT))
        assert keys == sorted(zip(df.dataset, df.event, df.HT))
    doc = train_from_config("ae", tiny_hlf, tmp_path / "m", config_file=_train_cfg(tmp_path), epochs=1, batch_size=50,
                            progress=False)
    assert doc["composition"]["wjets"]["expected_yield"] == pytest.approx(400 * 60.0)


def test_missing_weight_column_names_the_file(tiny_hlf):
    """Was: the dataset silently got zero yield (NaN weights skipped by the sum) and left the cocktail."""
    f = _edit(tiny_hlf, "wjets", lambda t: t.drop_columns(["weight"]), i=1)
    with pytest.raises(InputFileError, match="lacks column\\(s\\) weight") as e:
        load_hlf(tiny_hlf)
    assert e.value.path == str(f) and "\n" not in str(e.value)


def test_missing_feature_column_names_the_file(tiny_hlf):
    """Was: reported as 'non-finite values in HT' without saying which file lacks the column."""
    f = _edit(tiny_hlf, "dyjets", lambda t: t.drop_columns(["HT"]))
    with pytest.raises(InputFileError, match="lacks column\\(s\\) HT") as e:
        load_hlf(tiny_hlf)
    assert e.value.path == str(f)
    _edit(tiny_hlf, "dyjets", lambda t: t.append_column("HT", pa.array(["x"] * t.num_rows)))
    with pytest.raises(InputFileError, match="non-numeric column\\(s\\) HT \\(string\\)"):
        load_hlf(tiny_hlf)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_weight_names_the_file(tiny_hlf, bad):
    def poison(t):
        w = t.column("weight").to_numpy().copy()
        w[:3] = bad
        return t.set_column(t.schema.get_field_index("weight"), "weight", pa.array(w))
    f = _edit(tiny_hlf, "wjets", poison)
    with pytest.raises(InputFileError, match="non-finite weight in 3 of 200 events") as e:
        load_hlf(tiny_hlf)
    assert e.value.path == str(f)


def test_corrupt_parquet_names_the_file(tiny_hlf):
    """Was: a pyarrow ArrowInvalid traceback from the dataset reader."""
    f = tiny_hlf / "wjets" / "wjets_0.parquet"
    f.write_bytes(f.read_bytes()[:-100])  # truncated: no footer
    with pytest.raises(InputFileError, match="not a readable Parquet file") as e:
        load_hlf(tiny_hlf)
    assert e.value.path == str(f) and "\n" not in str(e.value)
    f.write_bytes(b"PAR1" + b"\0" * 50 + b"PAR1")
    with pytest.raises(InputFileError, match="not a readable Parquet file"):
        load_hlf(tiny_hlf, shard=(0, 2))


def test_cli_train_on_hlf_without_weight_is_one_line(tiny_hlf, tmp_path):
    _edit(tiny_hlf, "wjets", lambda t: t.drop_columns(["weight"]))
    r = subprocess.run(["sparkad", "train", "--model", "ae", "--hlf", str(tiny_hlf), "--out", str(tmp_path / "x"),
                        "--epochs", "1", "--batch-size", "50", "-q"], capture_output=True, text=True)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and last.endswith("wjets_0.parquet: lacks column(s) weight (needed: dataset, label, "
                                                        "weight and the HLF report's features)")
    assert not (tmp_path / "x").exists()


def test_nan_feature_refused_before_the_split(tiny_hlf):
    """A NaN in one event of a dataset is refused whichever split it would land in (was: training ran,
    then the thresholds failed on NaN validation scores)."""
    def poison(t):
        ht = t.column("HT").to_numpy().copy()
        ht[0] = np.nan
        return t.set_column(t.schema.get_field_index("HT"), "HT", pa.array(ht))
    _edit(tiny_hlf, "wjets", poison)
    df, report = load_hlf(tiny_hlf)  # NaN features may be legitimate elsewhere (scoring): refused by the cocktail
    with pytest.raises(ConfigError, match="dataset wjets: non-finite values in HT \\(1 events\\)"):
        build_training_data(df, report, CocktailConfig(background=["wjets", "dyjets"]))


def test_nan_only_in_validation_set_refused_before_training(tiny_hlf, tmp_path):
    from sparkad.train.loop import train
    df, report = load_hlf(tiny_hlf)
    data = build_training_data(df, report, CocktailConfig(background=["wjets", "dyjets"]))
    data.x_val[5, 1] = np.inf
    out = tmp_path / "m"
    cfg = TrainConfig(epochs=1, batch_size=50, threads=1, model={"hidden": [8], "latent": 2})
    with pytest.raises(ConfigError, match="validation set: non-finite values in MET \\(1 events\\)"):
        train(data, "ae", cfg, out, progress=False)
    assert not out.exists()  # refused before any checkpoint was written
    # a configuration built in code is checked too, before the first epoch
    data.x_val[5, 1] = 1.0
    with pytest.raises(ConfigError, match="training.early_stopping: expected a mapping"):
        train(data, "ae", TrainConfig(epochs=1, batch_size=50, early_stopping=5), out, progress=False)
    assert not out.exists()


BAD_CONFIGS = [
    ({"models": {"ae": [1, 2]}}, "models.ae: expected a mapping"),
    ({"cocktail": 5}, "cocktail: expected a mapping"),
    ({"training": [1]}, "training: expected a mapping"),
    ({"cocktail": {"contamination": {"dataset": "ttbar"}}}, "cocktail.contamination: missing key 'fraction'"),
    ({"cocktail": {"contamination": {"dataset": "ttbar", "fraction": 1}}}, "contamination.fraction must be in"),
    ({"cocktail": {"contamination": "ttbar"}}, "cocktail.contamination: expected a mapping"),
    ({"cocktail": {"n_train": "many"}}, "cocktail.n_train must be a positive integer"),
    ({"cocktail": {"validation_fraction": "half"}}, "cocktail.validation_fraction: expected a number"),
    ({"cocktail": {"validation_fraction": 1.5}}, "cocktail.validation_fraction must be in \\(0, 1\\)"),
    ({"cocktail": {"validation_fraction": 0}}, "validation_fraction must be in \\(0, 1\\) \\(or 0 with train_on_data"),
    ({"cocktail": {"background": "wjets"}}, "cocktail.background: expected a non-empty list"),
    ({"cocktail": {"train_on_data": "yes"}}, "cocktail.train_on_data must be true or false"),
    ({"cocktail": {"seed": -1}}, "cocktail.seed must be a non-negative integer"),
    ({"cocktail": {"backgound": ["wjets"]}}, "cocktail: unknown key\\(s\\) backgound"),
    ({"training": {"seed": "abc"}}, "training.seed must be a non-negative integer"),
    ({"training": {"threads": "many"}}, "training.threads must be a positive integer"),
    ({"training": {"epochs": 2.5}}, "training.epochs must be a positive integer"),
    ({"models": {"ae": {"model": {"hidden": 50}}}}, "models.ae.model.hidden must be a non-empty list"),
    ({"models": {"ae": {"model": {"learning_rate": "fast"}}}}, "models.ae.model.learning_rate: expected a number"),
    ({"models": {"ae": {"model": {"learning_rate": -1}}}}, "models.ae.model.learning_rate: must be > 0"),
    ({"models": {"ae": {"model": {"hiddn": [50]}}}}, "models.ae.model: unknown key\\(s\\) hiddn"),
    ({"models": {"ae": {"early_stopping": 5}}}, "models.ae.early_stopping: expected a mapping"),
    ({"models": {"ae": {"early_stopping": {"pateince": 3}}}}, "models.ae.early_stopping: unknown key\\(s\\) pateince"),
    ({"models": {"ae": {"early_stopping": {"patience": -1}}}}, "early_stopping.patience must be an integer >= 0"),
    ({"models": {"ae": {"reduce_lr": {"factor": -1}}}}, "models.ae.reduce_lr.factor must be in \\(0, 1\\)"),
    ({"models": {"ae": {"reduce_lr": {"factor": 2}}}}, "models.ae.reduce_lr.factor must be in \\(0, 1\\)"),
    ({"models": {"ae": {"reduce_lr": {"min_delta": "x"}}}}, "models.ae.reduce_lr.min_delta: expected a number"),
    ({"models": {"alad": {"model": {"beta_1": 1.5}}}}, "models.alad.model.beta_1 must be in \\[0, 1\\)"),
    ({"models": {"vae": {"model": {"likelihoods": {"HT": "cauchy"}}}}}, "likelihoods.HT: unknown family 'cauchy'"),
    ({"models": {"aee": {"epochs": 3}}}, "models: unknown key\\(s\\) aee"),
    ({"trainig": {"epochs": 3}}, "unknown section\\(s\\) trainig"),
]


@pytest.mark.parametrize("conf,message", BAD_CONFIGS, ids=[m.split(" ")[0].rstrip(":") for _, m in BAD_CONFIGS])
def test_bad_train_config_names_file_and_key(tmp_path, conf, message):
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump(conf))
    with pytest.raises(ConfigError, match=message) as e:
        resolve_config("ae", p)
    assert str(e.value).startswith(f"{p}: ") and "\n" not in str(e.value)


def test_bad_config_refused_before_the_hlf_is_read_or_output_written(tiny_hlf, tmp_path):
    """Was: ``early_stopping: 5`` failed after the first epoch and left a checkpoint behind."""
    out = tmp_path / "m"
    with pytest.raises(ConfigError, match="early_stopping"):
        train_from_config("ae", tiny_hlf, out, config_file=_train_cfg(tmp_path, models={"ae": {"early_stopping": 5}}),
                          epochs=1, batch_size=50, progress=False)
    assert not out.exists()
    with pytest.raises(ConfigError, match="training.epochs must be a positive integer"):  # a flag, merged
        resolve_config("ae", None, epochs=0)


def test_train_config_values_are_normalised():
    """Numbers PyYAML leaves as strings (1e-5) become floats; a config round-trips through model.json."""
    cfg = TrainConfig.from_dict({"model": {"learning_rate": "1e-5", "latent": 8}, "reduce_lr": {"factor": "5e-1"}},
                                "alad")
    assert cfg.model["learning_rate"] == 1e-5 and cfg.reduce_lr["factor"] == 0.5
    c = CocktailConfig.from_dict({"background": ["wjets"], "contamination": {"dataset": "ttbar", "fraction": "1e-3"}})
    assert c.contamination == {"dataset": "ttbar", "fraction": 0.001}
    assert CocktailConfig.from_dict(dict(c.__dict__)) == c  # evaluation rebuilds it from the provenance
    with pytest.raises(SparkadError, match="unknown model 'nope'"):
        TrainConfig.from_dict({}, "nope")


def test_step_budget_ends_the_run_inside_an_epoch(tiny_hlf, tmp_path):
    """training.steps: as many epochs as the budget needs, the last one cut at it; an epoch count
    given for the run replaces the budget; ALAD's default is a budget (conf/train.yaml)."""
    cfg = _train_cfg(tmp_path, models={"ae": {"steps": 7, "model": {"hidden": [8], "latent": 2}}})
    doc = train_from_config("ae", tiny_hlf, tmp_path / "m", config_file=cfg, batch_size=50, progress=False,
                            log=lambda m: None)
    hist = [json.loads(x) for x in (tmp_path / "m" / "history.jsonl").read_text().splitlines()]
    per_epoch = hist[0]["global_step"]  # the training half of the W + DY events, in batches of 50
    assert per_epoch < 7 and hist[-1]["global_step"] == 7 and len(hist) == -(-7 // per_epoch)
    assert doc["history"]["epochs"] == len(hist) and doc["config"]["training"]["steps"] == 7
    _, training = resolve_config("ae", cfg, epochs=2)
    assert training["steps"] is None and training["epochs"] == 2
    _, alad = resolve_config("alad", None)
    assert alad["steps"] == 16000 and alad["batch_size"] == 500
    for bad in (0, 2.5, "many"):
        with pytest.raises(ConfigError, match="training.steps must be a positive integer"):
            TrainConfig.from_dict({"steps": bad})

"""Training of a CWoLa-hunting classifier (`sparkad train --model cwola`; sparkad.model.cwola says what it is).

Data: the searched datasets (default: the data) of a dijet extraction, events in the signal region (label 1)
or its sidebands (label 0) of mjj, on `data.features` (default the LHC Olympics set), standardised with the
mean and spread of those events. k-fold by event identity (``event_folds``): fold i's network trains on the
other folds except fold i + 1, which is its validation set for early stopping (the best epoch's weights are
kept), and scores fold i. The classes are weighted to equal total weight. Network (Keras 3): dense ReLU
layers → one logit, binary cross-entropy; exported to the numpy ops of ``sparkad.model.networks``.

Stored with the model: the out-of-fold scores' thresholds at 10 %, 1 % and 0.1 % of the signal-region events,
the AUC of signal region against sidebands (≈ 0.5 when the two look alike: no signal, no mjj sculpting) and
the per-fold history.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from sparkad.core import storage
from sparkad.core.atomic import write_json_atomic
from sparkad.core.config import as_number, check_keys, load_conf, load_yaml, merge_config, require_mapping
from sparkad.core.errors import ConfigError, SparkadError
from sparkad.model.store import writes_model_dir
from sparkad.extract.dijet import read_dijet_report
from sparkad.model.cwola import ID_COLUMNS, KIND, classifier_logits, event_folds, mjj_regions
from sparkad.model.directory import exact_thresholds, seal_model_dir, start_model_dir, write_validation_scores
from sparkad.model.networks import fold

SECTIONS = {"data": {"features", "datasets", "signal_region", "sideband_width", "folds", "seed"},
            "model": {"hidden"},
            "training": {"epochs", "batch_size", "learning_rate", "patience", "seed"}}
#: fractions of the signal region's events of the stored thresholds
THRESHOLD_PPM = (100_000.0, 10_000.0, 1000.0)


def resolve_config(config_file=None, signal_region=None, epochs=None, batch_size=None, conf_name: str = KIND,
                   sections: dict = SECTIONS) -> dict:
    """conf/<conf_name>.yaml (cwola, or cathode with its `flow` section) with a user file over it, checked."""
    conf = require_mapping(load_conf(conf_name), f"conf/{conf_name}.yaml")
    source = f"conf/{conf_name}.yaml"
    if config_file:
        user = require_mapping(load_yaml(config_file) or {}, str(config_file))
        check_keys(user, set(sections), str(config_file))
        for name, keys in sections.items():
            if name in user:
                check_keys(require_mapping(user[name], f"{config_file}: {name}"), keys, f"{config_file}: {name}")
        conf = merge_config(conf, user)
        source = f"{config_file} (over conf/{conf_name}.yaml)"
    if signal_region is not None:
        conf["data"]["signal_region"] = list(signal_region)
    if epochs is not None:
        conf["training"]["epochs"] = int(epochs)
    if batch_size is not None:
        conf["training"]["batch_size"] = int(batch_size)
    d, m, t = conf["data"], conf["model"], conf["training"]
    sr = d["signal_region"]
    if not (isinstance(sr, (list, tuple)) and len(sr) == 2):
        raise ConfigError(f"{source}: data.signal_region must be [lo, hi] in GeV, got {sr!r}")
    lo, hi = (as_number(v, f"{source}: data.signal_region") for v in sr)
    w = as_number(d["sideband_width"], f"{source}: data.sideband_width", positive=True)
    if not 0 < lo - w < lo < hi:
        raise ConfigError(f"{source}: data.signal_region [{lo:g}, {hi:g}] with sidebands of {w:g} GeV: need "
                          f"0 < lo - sideband_width < lo < hi")
    d["signal_region"], d["sideband_width"] = [lo, hi], w
    if not (isinstance(d["features"], list) and d["features"] and all(isinstance(f, str) for f in d["features"])):
        raise ConfigError(f"{source}: data.features must be a list of feature names, got {d['features']!r}")
    if "mjj" in d["features"]:
        raise ConfigError(f"{source}: data.features must not hold mjj: the classifier would learn the signal region "
                          f"itself")
    for key, v, lo_ok in (("data.folds", d["folds"], 3), ("training.epochs", t["epochs"], 1),
                          ("training.batch_size", t["batch_size"], 1), ("training.patience", t["patience"], 1)):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo_ok:
            raise ConfigError(f"{source}: {key} must be an integer >= {lo_ok}, got {v!r}")
    if not (isinstance(m["hidden"], list) and m["hidden"] and all(isinstance(h, int) and h > 0 for h in m["hidden"])):
        raise ConfigError(f"{source}: model.hidden must be a list of positive layer widths, got {m['hidden']!r}")
    return conf


def load_events(hlf_dir, data_conf: dict, log=print):
    """(features (n, f), mjj, run, lumi, event, provenance) of the searched datasets' events."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    hlf_dir = storage.location(hlf_dir)
    report = read_dijet_report(hlf_dir)
    chosen = data_conf["datasets"] or [n for n, d in report["datasets"].items() if d["is_data"]]
    unknown = [c for c in chosen if c not in report["datasets"]]
    if unknown or not chosen:
        raise SparkadError(f"{hlf_dir}: no dataset(s) {', '.join(unknown) or '(data)'} to search "
                           f"(datasets: {', '.join(report['datasets'])})")
    cols = list(dict.fromkeys([*data_conf["features"], "mjj", *ID_COLUMNS]))
    tables = []
    for name in chosen:
        for f in storage.list_files(storage.join(hlf_dir, name), ".parquet"):
            t = pq.read_table(f, filesystem=storage.filesystem(f)[0] if storage.is_remote(f) else None)
            if t.num_rows == 0:
                continue
            missing = [c for c in cols if c not in t.column_names]
            if missing:
                raise SparkadError(f"{f}: no column(s) {', '.join(missing)} (data.features are dijet features)")
            tables.append(t.select(cols))
    if not tables:
        raise SparkadError(f"{hlf_dir}: no events in {', '.join(chosen)}")
    t = pa.concat_tables(tables)
    x = np.column_stack([t[f].to_numpy().astype(np.float64) for f in data_conf["features"]])
    ids = [t[c].to_numpy() for c in ID_COLUMNS]
    prov = {"datasets": chosen, "n_events": int(t.num_rows),
            "hlf_dir": str(hlf_dir) if storage.is_remote(hlf_dir) else str(Path(hlf_dir).resolve())}
    return x, t["mjj"].to_numpy().astype(np.float64), *ids, prov


def build(n_inputs: int, hidden, seed: int):
    import keras

    init = keras.initializers.GlorotUniform
    layers = [keras.Input((n_inputs,))]
    layers += [keras.layers.Dense(int(h), activation="relu", kernel_initializer=init(seed + i)) for i, h in enumerate(hidden)]
    layers.append(keras.layers.Dense(1, kernel_initializer=init(seed + len(hidden))))
    return keras.Sequential(layers, name="cwola")


def _balanced(y: np.ndarray) -> np.ndarray:
    """Per-event weights giving both classes the same total (the mean weight 1)."""
    n1, n0 = max(int(y.sum()), 1), max(int((1 - y).sum()), 1)
    return np.where(y == 1, 0.5 * len(y) / n1, 0.5 * len(y) / n0)


def fit_fold_classifiers(z, y, w, folds, model_conf: dict, training_conf: dict, progress=False, desc="train cwola"):
    """k classifiers of y (1/0) on standardised features z with weights w: network i trains on the folds
    other than i and i + 1 (its validation set for early stopping) and is meant to score fold i. Returns
    ({"fold<i>": exported network}, per-fold history). Also the references' trainer (idealised, supervised)."""
    import keras

    from sparkad.train.keras_nets import export_sequential

    k = int(folds.max()) + 1
    tc = training_conf
    nets, history = {}, []
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=k, unit="fold", desc=desc, dynamic_ncols=True)
    for i in range(k):
        val = folds == (i + 1) % k
        trn = (folds != i) & ~val
        keras.utils.set_random_seed(int(tc["seed"]) + i)
        model = build(z.shape[1], model_conf["hidden"], int(tc["seed"]) + 100 * i)
        model.compile(optimizer=keras.optimizers.Adam(float(tc["learning_rate"])),
                      loss=keras.losses.BinaryCrossentropy(from_logits=True), weighted_metrics=[])
        stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=int(tc["patience"]), restore_best_weights=True)
        h = model.fit(z[trn], y[trn], sample_weight=w[trn], validation_data=(z[val], y[val], w[val]),
                      epochs=int(tc["epochs"]), batch_size=int(tc["batch_size"]), callbacks=[stop], verbose=0,
                      shuffle=True)
        vl = [float(v) for v in h.history["val_loss"]]
        history.append({"fold": i, "epochs": len(vl), "best_epoch": int(np.argmin(vl)) + 1, "best_val_loss": min(vl),
                        "n_train": int(trn.sum()), "n_val": int(val.sum()), "n_scored": int((folds == i).sum())})
        nets[f"fold{i}"] = export_sequential(model)
        keras.backend.clear_session()
        if bar:
            bar.update(1)
            bar.set_postfix(val=f"{min(vl):.4g}")
    if bar:
        bar.close()
    return nets, history


@writes_model_dir
def train_cwola(hlf_dir, out, *, config_file=None, signal_region=None, epochs=None, batch_size=None, progress=True,
                log=print) -> dict:
    """Train the k fold classifiers, export them and write the model directory; returns model.json's content."""
    conf = resolve_config(config_file, signal_region, epochs, batch_size)
    dc, tc, mc = conf["data"], conf["training"], conf["model"]
    x, mjj, run, lumi, event, prov = load_events(hlf_dir, dc, log)
    region = mjj_regions(mjj, dc["signal_region"], dc["sideband_width"])
    finite = np.all(np.isfinite(x), axis=1)
    use = (region >= 0) & finite
    n_sr, n_sb = int((use & (region == 1)).sum()), int((use & (region == 0)).sum())
    lo, hi = dc["signal_region"]
    log(f"cwola: {n_sr} signal-region events ({lo:g}-{hi:g} GeV), {n_sb} in the sidebands "
        f"({dc['sideband_width']:g} GeV each side), {int(((region >= 0) & ~finite).sum())} without finite features")
    k = int(dc["folds"])
    if min(n_sr, n_sb) < 5 * k:
        raise SparkadError(f"{hlf_dir}: {n_sr} signal-region and {n_sb} sideband events: too few for {k}-fold training")
    xs, y = x[use], (region[use] == 1).astype(np.float32)
    mean, scale = xs.mean(axis=0), xs.std(axis=0)
    scale[scale == 0] = 1.0
    z = ((xs - mean) / scale).astype(np.float32)
    folds = event_folds(run[use], lumi[use], event[use], k)
    w = _balanced(y).astype(np.float32)
    t0 = time.time()
    nets, history = fit_fold_classifiers(z, y, w, folds, mc, tc, progress=progress)
    # out-of-fold scores from the exported (numpy) networks: thresholds as scoring will see them
    oof = classifier_logits([fold(nets[f"fold{i}"]) for i in range(k)], z, folds)
    from sklearn.metrics import roc_auc_score

    auc = float(roc_auc_score(y, oof))
    log(f"cwola: signal region vs sidebands AUC {auc:.4f} out of fold (0.5: indistinguishable)")
    sr_scores = oof[y == 1]
    doc_extra = {"sr_vs_sb_auc": auc}
    return write_model_dir(Path(out), nets=nets, conf=conf, mean=mean, scale=scale, sr_scores=sr_scores,
                           provenance={**prov, "n_sr": n_sr, "n_sb": n_sb, "train_seconds": round(time.time() - t0, 2)},
                           history={"folds": history}, extra=doc_extra)


def write_model_dir(out: Path, *, nets: dict, conf: dict, mean, scale, sr_scores, provenance: dict, history: dict,
                    extra: dict, kind: str = KIND) -> dict:
    """The model directory of a fold classifier (kind cwola or cathode: the score is named after the kind)."""
    spec, blob = start_model_dir(out, nets)
    write_validation_scores({kind: sr_scores}, out)  # the signal region's out-of-fold scores: the binning
    dc = conf["data"]
    doc = {"kind": kind, "score_names": [kind], "features": list(dc["features"]),
           "standardise": {"mean": [float(v) for v in mean], "scale": [float(v) for v in scale]},
           "folds": int(dc["folds"]), "fold_hash": "splitmix64((run << 40) ^ (luminosityBlock << 20) ^ event) mod folds",
           "signal_region": list(dc["signal_region"]), "sideband_width": dc["sideband_width"], "networks": spec,
           "thresholds": {kind: exact_thresholds(sr_scores, THRESHOLD_PPM)}, "config": conf,
           "provenance": provenance, "history": history, **extra}
    return seal_model_dir(out, doc, blob)


#: the summary of a sliding-window scan (`train_cwola_scan`), written last in its folder
SCAN_FILE = "scan.json"


def scan_windows(lo: float, hi: float, width: float, step: float | None = None) -> list[tuple[float, float]]:
    """Signal regions [a, a + width) for a = lo, lo + step, ... while a + width <= hi (step default: width)."""
    step = width if step is None else step
    if not (0 < width and 0 < step and lo + width <= hi):
        raise ConfigError(f"scan {lo:g}:{hi:g}:{width:g}:{step:g}: need width, step > 0 and lo + width <= hi")
    out, a = [], lo
    while a + width <= hi + 1e-9:
        out.append((round(a, 6), round(a + width, 6)))
        a += step
    return out


@writes_model_dir
def train_cwola_scan(hlf_dir, out, windows, *, config_file=None, epochs=None, batch_size=None, progress=True,
                     log=print) -> dict:
    """CWoLa hunting's sliding signal region: one model per window in OUT/sr_<lo>_<hi>/ (a window with too few
    events is reported and skipped), and OUT/scan.json (written last: the scan's completion marker)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / SCAN_FILE).unlink(missing_ok=True)
    rows = []
    for lo, hi in windows:
        name = f"sr_{lo:g}_{hi:g}"
        try:
            doc = train_cwola(hlf_dir, out / name, config_file=config_file, signal_region=(lo, hi), epochs=epochs,
                              batch_size=batch_size, progress=progress, log=log)
        except SparkadError as e:
            if "too few" not in str(e):
                raise
            log(f"cwola scan: window {lo:g}-{hi:g} GeV skipped ({e})")
            rows.append({"signal_region": [lo, hi], "skipped": str(e)})
            continue
        rows.append({"signal_region": [lo, hi], "model": name, "sr_vs_sb_auc": doc["sr_vs_sb_auc"],
                     "n_sr": doc["provenance"]["n_sr"], "n_sb": doc["provenance"]["n_sb"]})
    if not any("model" in r for r in rows):
        raise SparkadError(f"{hlf_dir}: no window of the scan holds enough events to train on")
    doc = {"kind": "cwola_scan", "windows": rows}
    write_json_atomic(doc, out / SCAN_FILE)
    return doc

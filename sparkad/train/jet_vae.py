"""Training of the per-jet convolutional VAE of seeds/004 (`sparkad train --model jet_vae`).

Data: the |Δη| sideband (> `deta_min`) events of the background MC datasets (or of the data with
`train_on_data`) of a dijet extraction; jet 1 and jet 2 of the training events are mixed into one sample of
jet images (their event is forgotten, seeds/004 sec. 2.2). Images: sparkad.model.jet_images, built here from
the stored constituents. The events are split before the jets are mixed: the validation events' two jets
give the validation loss and the strategies' event scores, whose ppm thresholds are stored.

Network (Keras 3, exported to the numpy ops of sparkad.model.networks): encoder 3×3 conv (filters[0], ReLU)
→ 2×2 average pool → 3×3 conv (filters[1], ReLU) → 2×2 average pool → dense (ReLU) → 2·latent (μ, log σ²);
decoder dense (ReLU) → dense (ReLU) → reshape → 2×2 up-sampling → 3×3 conv (ReLU) → up-sampling → 3×3 conv
(1 channel, linear). Loss per jet Σ (x − x̂)² + β D_KL, z = μ + σ ε while training, z = μ when scoring.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from sparkad.core import storage
from sparkad.core.config import check_keys, load_conf, load_yaml, merge_config, require_mapping
from sparkad.core.errors import ConfigError, SparkadError
from sparkad.model.store import writes_model_dir
from sparkad.extract.dijet import read_dijet_report
from sparkad.model.directory import exact_thresholds, seal_model_dir, start_model_dir, write_validation_scores
from sparkad.model.jet_images import constituents_of, jet_images
from sparkad.model.jet_vae import KIND, event_scores, jet_losses
from sparkad.model.networks import fold
from sparkad.train.keras_nets import export_sequential as export

SECTIONS = {"data": {"background_labels", "train_on_data", "deta_min", "validation_fraction", "max_events", "seed"},
            "image": {"n_pixels", "width", "center", "rotate", "normalize", "power"},
            "model": {"filters", "dense", "latent", "beta"},
            "training": {"epochs", "batch_size", "learning_rate", "seed"}}
#: background fractions of the stored thresholds: seeds/004 selects 1 % (10 000 ppm) of the events
THRESHOLD_PPM = (100_000.0, 10_000.0, 1000.0, 100.0)
COLUMNS = ["deta", "weight"] + [f"j{k}_c_{q}" for k in (1, 2) for q in ("pt", "deta", "dphi")]


def resolve_config(config_file=None, epochs=None, batch_size=None, train_on_data=False) -> dict:
    conf = _checked(load_conf("jet_vae"), "conf/jet_vae.yaml")
    if config_file:
        conf = merge_config(conf, _checked(load_yaml(config_file), str(config_file)))
    if epochs is not None:
        conf["training"]["epochs"] = int(epochs)
    if batch_size is not None:
        conf["training"]["batch_size"] = int(batch_size)
    if train_on_data:
        conf["data"]["train_on_data"] = True
    m, t, d = conf["model"], conf["training"], conf["data"]
    if not (isinstance(m["filters"], list) and len(m["filters"]) == 2 and all(int(f) > 0 for f in m["filters"])):
        raise ConfigError(f"model.filters: expected two positive filter counts, got {m['filters']!r}")
    if conf["image"]["n_pixels"] % 4:
        raise ConfigError(f"image.n_pixels must be a multiple of 4 (two 2x2 poolings), got {conf['image']['n_pixels']}")
    for key, v in (("training.epochs", t["epochs"]), ("training.batch_size", t["batch_size"]),
                   ("model.latent", m["latent"]), ("model.dense", m["dense"]), ("data.max_events", d["max_events"])):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ConfigError(f"{key}: expected a positive integer, got {v!r}")
    power = conf["image"].get("power", 1.0)
    if isinstance(power, bool) or not isinstance(power, (int, float)) or not 0 < power <= 1:
        raise ConfigError(f"image.power must be a number in (0, 1], got {power!r}")
    if not 0 < float(d["validation_fraction"]) < 1:
        raise ConfigError(f"data.validation_fraction must be in (0, 1), got {d['validation_fraction']!r}")
    return conf


def _checked(conf, source: str) -> dict:
    conf = require_mapping(conf if conf is not None else {}, source)
    check_keys(conf, set(SECTIONS), source)
    for name, keys in SECTIONS.items():
        if name in conf:
            check_keys(require_mapping(conf[name], f"{source}: {name}"), keys, f"{source}: {name}")
    return conf


def load_sideband(hlf_dir, data_conf: dict, log=print):
    """The training events' constituent columns (a pyarrow table) and their provenance."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    hlf_dir = storage.location(hlf_dir)
    report = read_dijet_report(hlf_dir)
    on_data = bool(data_conf["train_on_data"])
    labels = set(data_conf["background_labels"] or [])
    chosen = [n for n, d in report["datasets"].items()
              if (d["is_data"] if on_data else (not d["is_data"] and d["label"] in labels))]
    if not chosen:
        what = "data datasets" if on_data else f"MC datasets labelled {', '.join(sorted(labels))}"
        raise SparkadError(f"{hlf_dir}: no {what} to train on (datasets: {', '.join(report['datasets'])})")
    tables = []
    for name in chosen:
        files = storage.list_files(storage.join(hlf_dir, name), ".parquet")
        for f in files:
            t = pq.read_table(f, filesystem=storage.filesystem(f)[0] if storage.is_remote(f) else None, columns=None)
            if t.num_rows == 0:  # a dataset no event of which passed: its placeholder file holds no constituents
                continue
            missing = [c for c in COLUMNS if c not in t.column_names]
            if missing:
                raise SparkadError(f"{f}: no column(s) {', '.join(missing)} (extracted without constituents?)")
            t = t.select(COLUMNS)
            tables.append(t.filter(pc.greater(t["deta"], float(data_conf["deta_min"]))))
    n_all = sum(t.num_rows for t in tables)
    if n_all < 10:
        raise SparkadError(f"{hlf_dir}: {n_all} sideband events (|deta| > {data_conf['deta_min']}) in "
                           f"{', '.join(chosen)}: too few to train on")
    table = pa.concat_tables(tables)
    rng = np.random.default_rng(int(data_conf["seed"]))
    w = table["weight"].to_numpy()
    n = min(n_all, int(data_conf["max_events"]))
    if np.ptp(w) > 1e-9 * np.abs(w).max():  # several samples of different weights: draw by weight
        pick = rng.choice(n_all, n, replace=True, p=w / w.sum())
    else:
        pick = rng.permutation(n_all)[:n]
    log(f"jet_vae: {n_all} sideband events in {', '.join(chosen)}; training on {n}")
    return table.take(pick), {"datasets": chosen, "n_sideband": n_all, "n_used": n, "deta_min": data_conf["deta_min"],
                              "train_on_data": on_data,
                              "hlf_dir": str(hlf_dir) if storage.is_remote(hlf_dir) else str(Path(hlf_dir).resolve())}


def build(n_pixels: int, filters, dense: int, latent: int, seed: int):
    """(encoder, decoder) keras.Sequential models (see the module docstring)."""
    import keras

    init = keras.initializers.GlorotUniform
    f1, f2 = int(filters[0]), int(filters[1])
    q = n_pixels // 4
    encoder = keras.Sequential([
        keras.Input((n_pixels, n_pixels, 1)),
        keras.layers.Conv2D(f1, 3, padding="same", activation="relu", kernel_initializer=init(seed)),
        keras.layers.AveragePooling2D(2),
        keras.layers.Conv2D(f2, 3, padding="same", activation="relu", kernel_initializer=init(seed + 1)),
        keras.layers.AveragePooling2D(2),
        keras.layers.Flatten(),
        keras.layers.Dense(dense, activation="relu", kernel_initializer=init(seed + 2)),
        keras.layers.Dense(2 * latent, kernel_initializer=init(seed + 3)),
    ], name="encoder")
    decoder = keras.Sequential([
        keras.Input((latent,)),
        keras.layers.Dense(dense, activation="relu", kernel_initializer=init(seed + 4)),
        keras.layers.Dense(q * q * f2, activation="relu", kernel_initializer=init(seed + 5)),
        keras.layers.Reshape((q, q, f2)),
        keras.layers.UpSampling2D(2),
        keras.layers.Conv2D(f1, 3, padding="same", activation="relu", kernel_initializer=init(seed + 6)),
        keras.layers.UpSampling2D(2),
        keras.layers.Conv2D(1, 3, padding="same", kernel_initializer=init(seed + 7)),
    ], name="decoder")
    return encoder, decoder


def _images(table, image_conf: dict) -> tuple[np.ndarray, np.ndarray]:
    return tuple(jet_images(*constituents_of(table, k), **image_conf)[0] for k in (1, 2))


@writes_model_dir
def train_jet_vae(hlf_dir, out, *, config_file=None, epochs=None, batch_size=None, train_on_data=False,
                  progress=True, log=print) -> dict:
    """Train, export and write the model directory; returns model.json's content."""
    conf = resolve_config(config_file, epochs, batch_size, train_on_data)
    table, provenance = load_sideband(hlf_dir, conf["data"], log)
    import keras
    import tensorflow as tf

    t0 = time.time()
    img1, img2 = _images(table, conf["image"])
    n = len(img1)
    rng = np.random.default_rng(int(conf["data"]["seed"]) + 1)
    order = rng.permutation(n)
    n_val = max(1, int(round(n * float(conf["data"]["validation_fraction"]))))
    val, trn = order[:n_val], order[n_val:]
    x_train = np.concatenate([img1[trn], img2[trn]])[..., None]  # both jets mixed, their event forgotten
    x_val = np.concatenate([img1[val], img2[val]])[..., None]
    tc, mc = conf["training"], conf["model"]
    keras.utils.set_random_seed(int(tc["seed"]))
    encoder, decoder = build(int(conf["image"]["n_pixels"]), mc["filters"], int(mc["dense"]), int(mc["latent"]),
                             int(tc["seed"]))
    beta = float(mc["beta"])
    latent = int(mc["latent"])
    opt = keras.optimizers.Adam(float(tc["learning_rate"]))
    params = encoder.trainable_variables + decoder.trainable_variables

    def losses(x, sample):
        stats = encoder(x, training=sample)
        mu, logvar = stats[:, :latent], stats[:, latent:]
        z = mu + tf.exp(0.5 * logvar) * tf.random.normal(tf.shape(mu)) if sample else mu
        xhat = decoder(z, training=sample)
        reco = tf.reduce_sum(tf.square(x - xhat), axis=[1, 2, 3])
        kl = -0.5 * tf.reduce_sum(1.0 + logvar - tf.square(mu) - tf.exp(logvar), axis=1)
        return reco, kl

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            reco, kl = losses(x, True)
            loss = tf.reduce_mean(reco + beta * kl)
        opt.apply_gradients(zip(tape.gradient(loss, params), params))
        return loss

    @tf.function
    def evaluate(x):
        reco, kl = losses(x, False)
        return tf.reduce_mean(reco + beta * kl)

    bs = int(tc["batch_size"])
    history = []
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=int(tc["epochs"]), unit="epoch", desc="train jet_vae", dynamic_ncols=True)
    for epoch in range(int(tc["epochs"])):
        perm = rng.permutation(len(x_train))
        tot, nb = 0.0, 0
        for s in range(0, len(perm), bs):
            tot += float(step(tf.constant(x_train[perm[s:s + bs]])))
            nb += 1
        v = sum(float(evaluate(tf.constant(x_val[s:s + 4096]))) * len(x_val[s:s + 4096])
                for s in range(0, len(x_val), 4096)) / len(x_val)
        history.append({"epoch": epoch + 1, "train_loss": tot / max(nb, 1), "val_loss": v})
        if bar:
            bar.update(1)
            bar.set_postfix(train=f"{tot / max(nb, 1):.4g}", val=f"{v:.4g}")
    if bar:
        bar.close()
    nets = {"encoder": export(encoder), "decoder": export(decoder)}
    # the validation events' scores from the exported (numpy) networks: thresholds as scoring will see them
    folded = {k: fold(v) for k, v in nets.items()}
    l1 = jet_losses(folded, img1[val], beta)["loss"]
    l2 = jet_losses(folded, img2[val], beta)["loss"]
    val_scores = event_scores(l1, l2)
    doc = write_model_dir(Path(out), nets=nets, conf=conf, val_scores=val_scores, provenance={
        **provenance, "n_train": int(len(trn)), "n_val": int(n_val), "n_train_jets": int(len(x_train)),
        "train_seconds": round(time.time() - t0, 2)},
        history={"epochs": len(history), "last": history[-1] if history else {}, "per_epoch": history})
    return doc


def write_model_dir(out: Path, *, nets: dict, conf: dict, val_scores: dict, provenance: dict, history: dict) -> dict:
    spec, blob = start_model_dir(out, nets)
    write_validation_scores(val_scores, out)  # the scoring pass's score binning
    doc = {"kind": KIND, "score_names": list(val_scores), "image": conf["image"], "networks": spec,
           "config": {**conf["model"], "training": conf["training"], "data": conf["data"]},
           "thresholds": {k: exact_thresholds(v, THRESHOLD_PPM) for k, v in val_scores.items()},
           "provenance": provenance, "history": history}
    return seal_model_dir(out, doc, blob)

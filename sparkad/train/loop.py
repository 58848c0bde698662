"""The one training loop for every model.

Written for ``tf.distribute``: the step runs in ``strategy.run`` with losses averaged over the
global batch, so the same code trains on one process (default strategy) and under
``MultiWorkerMirroredStrategy`` (Keras 3 ``fit()`` is broken there: keras-team/keras#20585).
Checkpoints every N steps hold every variable (weights, optimizer slots, EMA, RNG states) and the
position in the run (epoch, step); a killed run resumes from the last one and continues the same
run: the per-epoch shuffles are seeded by epoch, so the batches that follow are the same.
"""
from __future__ import annotations

import hashlib
import io
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sparkad.core.atomic import write_bytes_atomic
from sparkad.train.cocktail import TrainingData, is_int
from sparkad.core.config import as_number, check_keys, require_mapping
from sparkad.core.errors import ConfigError, SparkadError
from sparkad.model.baselines import FIT_EVENTS, fit_baselines, score_baselines
from sparkad.model.directory import write_model_dir
from sparkad.model.preprocessing import Preprocessor, check_finite


@dataclass
class TrainConfig:
    epochs: int = 20
    #: a budget of optimizer steps instead of epochs: the run ends after this many steps (inside an
    #: epoch if need be), so a 20k- and a 20M-event sample get the same number of updates; an epoch
    #: count given for the run (--epochs) replaces it
    steps: int | None = None
    batch_size: int = 256
    checkpoint_every: int = 500        # steps
    seed: int = 1
    early_stopping: dict | None = None  # {"patience": 20, "min_delta": 0.005}
    reduce_lr: dict | None = None       # {"patience": 8, "min_delta": 0.01, "factor": 0.5}
    threads: int | None = None          # TensorFlow intra/inter-op threads (None: TF default)
    # TF op determinism. Same data + seed give the same weights bit for bit at threads: 1 (two runs,
    # 2026-12-07); at TensorFlow's default thread count two ALAD trainings differed in the last bits
    deterministic: bool = True
    model: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict | None, kind: str | None = None, where: str = "training") -> "TrainConfig":
        """Validated configuration (``kind``: also check ``model`` against that model's keys). Every
        value is checked here, before any data is read or a checkpoint written: a wrong type would
        otherwise fail after the first epoch, and a typo in a key would be silently ignored."""
        d = dict(require_mapping(d if d is not None else {}, where))
        check_keys(d, cls.__dataclass_fields__, where)
        cfg = cls(**d)
        for k in ("epochs", "batch_size", "checkpoint_every"):
            v = getattr(cfg, k)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ConfigError(f"{where}.{k} must be a positive integer, got {v!r}")
        if cfg.steps is not None and not is_int(cfg.steps, 1):
            raise ConfigError(f"{where}.steps must be a positive integer (or null: train by epochs), got {cfg.steps!r}")
        if not is_int(cfg.seed, 0):
            raise ConfigError(f"{where}.seed must be a non-negative integer, got {cfg.seed!r}")
        if cfg.threads is not None and not is_int(cfg.threads, 1):
            raise ConfigError(f"{where}.threads must be a positive integer (or null: TensorFlow's default), "
                              f"got {cfg.threads!r}")
        if not isinstance(cfg.deterministic, bool):
            raise ConfigError(f"{where}.deterministic must be true or false, got {cfg.deterministic!r}")
        cfg.early_stopping = _check_plateau(cfg.early_stopping, f"{where}.early_stopping", factor=False)
        cfg.reduce_lr = _check_plateau(cfg.reduce_lr, f"{where}.reduce_lr", factor=True)
        cfg.model = check_model_config(kind, cfg.model, f"{where}.model")
        return cfg


def _check_plateau(d, where: str, *, factor: bool) -> dict | None:
    """early_stopping {patience, min_delta} / reduce_lr {patience, min_delta, factor}, or null (off)."""
    if d is None:
        return None
    d = dict(require_mapping(d, where))
    check_keys(d, ("patience", "min_delta", "factor") if factor else ("patience", "min_delta"), where)
    if "patience" in d and not is_int(d["patience"], 0):
        raise ConfigError(f"{where}.patience must be an integer >= 0 (epochs), got {d['patience']!r}")
    if "min_delta" in d:
        d["min_delta"] = as_number(d["min_delta"], f"{where}.min_delta")
        if d["min_delta"] < 0:
            raise ConfigError(f"{where}.min_delta must be >= 0, got {d['min_delta']!r}")
    if "factor" in d:
        d["factor"] = as_number(d["factor"], f"{where}.factor")
        if not 0 < d["factor"] < 1:  # the learning rate is multiplied by it: >= 1 never reduces, <= 0 breaks Adam
            raise ConfigError(f"{where}.factor must be in (0, 1), got {d['factor']!r}")
    return d


def _hidden(v, where):
    if not isinstance(v, list) or not v or not all(is_int(u, 1) for u in v):
        raise ConfigError(f"{where} must be a non-empty list of positive integers (layer widths), got {v!r}")
    return v


def _positive_int(v, where):
    if not is_int(v, 1):
        raise ConfigError(f"{where} must be a positive integer, got {v!r}")
    return v


def _positive(v, where):
    return as_number(v, where, positive=True)


def _non_negative(v, where):
    v = as_number(v, where)
    if v < 0:
        raise ConfigError(f"{where} must be >= 0, got {v!r}")
    return v


def _unit(v, where):
    v = as_number(v, where)
    if not 0 <= v < 1:
        raise ConfigError(f"{where} must be in [0, 1), got {v!r}")
    return v


def _flag(v, where):
    if not isinstance(v, bool):
        raise ConfigError(f"{where} must be true or false, got {v!r}")
    return v


def _likelihoods(v, where):
    from sparkad.model.vae_likelihoods import FAMILIES
    for f, fam in require_mapping(v, where).items():
        if fam not in FAMILIES:
            raise ConfigError(f"{where}.{f}: unknown family {fam!r} (families: {', '.join(FAMILIES)})")
    return v


#: the model keys each model reads (models/ae.py, alad.py, vae.py), with their checks
MODEL_KEYS = {
    "ae": {"hidden": _hidden, "latent": _positive_int, "learning_rate": _positive},
    "alad": {"latent": _positive_int, "learning_rate": _positive, "lr_scale": _positive, "beta_1": _unit,
             "ema_decay": _unit, "spectral_norm": _flag},
    "vae": {"hidden": _hidden, "latent": _positive_int, "beta": _non_negative, "learning_rate": _positive,
            "lr_scale": _positive, "likelihoods": _likelihoods},
}


def check_model_config(kind: str | None, model, where: str = "model") -> dict:
    """The ``model`` mapping of ``kind``, checked key by key (numbers given as strings, e.g. 1e-5, become
    floats); with no kind only its type is checked."""
    model = dict(require_mapping(model if model is not None else {}, where))
    if kind is None:
        return model
    if kind not in MODEL_KEYS:
        raise ConfigError(f"unknown model {kind!r} (models: {', '.join(MODEL_KEYS)})")
    checks = MODEL_KEYS[kind]
    check_keys(model, checks, where)
    for k, v in model.items():
        model[k] = checks[k](v, f"{where}.{k}")
    return model


def _config_hash(kind: str, cfg: TrainConfig, data: TrainingData, pre: Preprocessor) -> str:
    """Identity of a run: a checkpoint is resumed only by the same model, configuration, data and inputs."""
    # epochs, checkpoint interval and threads only say where to stop or how fast: a run may be extended
    trajectory = {k: v for k, v in cfg.__dict__.items() if k not in ("epochs", "steps", "checkpoint_every", "threads")}
    h = hashlib.sha256(json.dumps([kind, trajectory, data.provenance, pre.to_dict()], sort_keys=True,
                                  default=str).encode())
    h.update(np.ascontiguousarray(data.x_train).tobytes()[:1 << 20])
    return h.hexdigest()[:16]


def _save_checkpoint(path: Path, variables, counters: dict) -> None:
    buf = io.BytesIO()
    np.savez(buf, **{f"v{i}": v.numpy() for i, v in enumerate(variables)}, counters=json.dumps(counters))
    write_bytes_atomic(buf.getvalue(), path)


def _load_checkpoint(path: Path, variables) -> dict:
    with np.load(path) as z:
        counters = json.loads(str(z["counters"]))
        if len(z.files) - 1 != len(variables):
            raise SparkadError(f"{path}: checkpoint holds {len(z.files) - 1} variables, model has {len(variables)}")
        for i, v in enumerate(variables):
            v.assign(z[f"v{i}"])
    return counters


def _trim_history(path: Path, epochs_done: int) -> None:
    """history.jsonl as of the checkpoint being resumed: a run killed after an epoch's record was appended
    but before that epoch's checkpoint was written redoes the epoch, whose record would then appear twice
    (and a record cut short by the kill would be unreadable)."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("epoch", 0) <= epochs_done:
            keep.append(line)
    text = "".join(f"{line}\n" for line in keep)
    if text != path.read_text():
        write_bytes_atomic(text.encode(), path)


def _allgather(strategy, a: np.ndarray) -> np.ndarray:
    """Concatenate one array per worker along axis 0, in worker order (a collective: every worker
    must call it at the same point)."""
    import tensorflow as tf
    t = tf.constant(a)
    resolver = strategy.cluster_resolver
    local = max(1, strategy.num_replicas_in_sync // resolver.cluster_spec().num_tasks(resolver.task_type))
    # with several replicas per worker (GPUs), only the worker's first replica contributes its array
    v = strategy.experimental_distribute_values_from_function(
        lambda ctx: t if ctx.replica_id_in_sync_group % local == 0 else t[:0])
    return strategy.gather(v, axis=0).numpy()


def train(data: TrainingData, kind: str, cfg: TrainConfig, out: str | Path, *, strategy=None,
          progress: bool = True, stop_after_steps: int | None = None, log=print, on_epoch=None) -> dict:
    """Train ``kind`` on ``data`` into the model directory ``out``; returns model.json's content.

    ``stop_after_steps`` ends the run early after that many steps of this call (used to test resuming).
    ``on_epoch(record, score)`` is called after each epoch with the history record and a function
    mapping raw features (events × features) to the current model's named scores.
    """
    import tensorflow as tf

    from sparkad.train.models import make_model
    from sparkad.model.networks import fold
    from sparkad.model.scores import SCORERS

    cfg = TrainConfig.from_dict(dict(cfg.__dict__), kind)  # callers may build a TrainConfig directly
    # both sets before the first step: NaN validation features would surface only after the last epoch
    check_finite(data.x_train, data.features, "training set")
    check_finite(data.x_val, data.features, "validation set")
    if cfg.threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(cfg.threads)
            tf.config.threading.set_inter_op_parallelism_threads(cfg.threads)
        except RuntimeError:
            pass  # already initialised in this process
    if cfg.deterministic:
        tf.config.experimental.enable_op_determinism()
    out = Path(out)
    strategy = strategy or tf.distribute.get_strategy()
    replicas = strategy.num_replicas_in_sync
    global_batch = cfg.batch_size * replicas
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is not None and getattr(resolver, "task_type", None):
        n_workers, worker = resolver.cluster_spec().num_tasks(resolver.task_type), int(resolver.task_id)
    else:
        n_workers, worker = 1, 0
    local_replicas = max(1, replicas // n_workers)
    # sharded: each worker holds only its disjoint share of the data (train_from_config(shard=...)) and
    # feeds its own batches; else every worker walks the same shuffled order of all the data and feeds
    # its own disjoint slice of each global batch
    sharded = n_workers > 1 and data.provenance.get("shard") is not None
    gather = (lambda a: _allgather(strategy, a)) if sharded else None
    if sharded:  # the same pre-processing on every worker: fitted on an equal sample of each share
        k = int(min(gather(np.array([len(data.x_train)]))))
        pre = Preprocessor.fit(gather(np.asarray(data.x_train[:min(k, 200_000)], np.float64)), data.features)
    else:
        pre = Preprocessor.fit(data.x_train, data.features)
    x_train = pre.transform(data.x_train)
    x_val = pre.transform(data.x_val)
    w_train = np.asarray(data.w_train, np.float32)

    local_batch = cfg.batch_size * local_replicas
    steps_per_epoch = int(min(gather(np.array([len(x_train) // local_batch])))) if sharded \
        else len(x_train) // global_batch
    if steps_per_epoch < 1:
        raise ConfigError(f"training set of {len(x_train)} events is smaller than one batch of {global_batch}")
    # a step budget: as many epochs as it needs, the last one cut at the budget
    epochs = -(-cfg.steps // steps_per_epoch) if cfg.steps else cfg.epochs
    model_cfg = dict(cfg.model)
    if kind == "alad" and cfg.batch_size != 50 and "lr_scale" not in model_cfg:
        model_cfg["lr_scale"] = cfg.batch_size / 50.0  # linear learning-rate scaling from the paper's batch of 50
    if kind == "vae":
        model_cfg["preprocessing"] = pre.to_dict()  # the VAE's likelihoods live on physical feature values
    with strategy.scope():
        model = make_model(kind, pre.n_inputs, model_cfg, cfg.seed)
        for opt, variables in model.optimizers().values():
            opt.build(variables)
    state = model.state_variables() + [v for opt, _ in model.optimizers().values() for v in opt.variables]

    @tf.function
    def step(x, w):
        def replica_step(x, w):
            losses = model.train_step(x, w, global_batch)
            model.after_step()
            return losses
        per_replica = strategy.run(replica_step, args=(x, w))
        return {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for k, v in per_replica.items()}

    def feed(x, w):
        """This worker's slice of the global batch, split across its local replicas (e.g. GPUs)."""
        if local_replicas == 1:
            return tf.constant(x), tf.constant(w)
        xs, ws = np.array_split(x, local_replicas), np.array_split(w, local_replicas)
        pick = lambda parts: lambda ctx: tf.constant(parts[ctx.replica_id_in_sync_group % local_replicas])  # noqa: E731
        return (strategy.experimental_distribute_values_from_function(pick(xs)),
                strategy.experimental_distribute_values_from_function(pick(ws)))

    (out / "checkpoint").mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "checkpoint" / "state.npz"
    run_id = _config_hash(kind, cfg, data, pre)
    counters = {"epoch": 0, "step_in_epoch": 0, "global_step": 0, "run_id": run_id, "best": None, "wait": 0,
                "lr_wait": 0, "stopped": False, "train_seconds": 0.0}
    history_path = out / "history.jsonl"
    if ckpt_path.exists():
        saved = _load_checkpoint(ckpt_path, state)
        if saved.get("run_id") != run_id:
            raise SparkadError(f"{out}: holds a checkpoint of a different training configuration or data; "
                               f"use another --out or remove {out / 'checkpoint'}")
        counters = saved
        log(f"resuming from {ckpt_path} at epoch {counters['epoch']}, step {counters['global_step']}")
        _trim_history(history_path, counters["epoch"])
    else:
        history_path.unlink(missing_ok=True)

    def set_lr(factor):
        for opt, _ in model.optimizers().values():
            opt.learning_rate.assign(float(opt.learning_rate.numpy()) * factor)

    steps_this_call = 0
    tqdm = None
    if progress:
        from tqdm import tqdm
    while counters["epoch"] < epochs and not counters["stopped"]:
        epoch = counters["epoch"]
        t_epoch = time.time()
        perm = np.random.default_rng(cfg.seed * 100003 + epoch + (7919 * worker if sharded else 0)).permutation(len(x_train))
        sums: dict[str, float] = {}
        bar = tqdm(total=steps_per_epoch, initial=counters["step_in_epoch"], desc=f"{kind} epoch {epoch + 1}/{epochs}",
                   unit="step", leave=False) if tqdm else None
        while counters["step_in_epoch"] < steps_per_epoch and not (cfg.steps and counters["global_step"] >= cfg.steps):
            b = counters["step_in_epoch"]
            idx = perm[b * local_batch:(b + 1) * local_batch] if sharded else \
                perm[b * global_batch:(b + 1) * global_batch][worker::n_workers]
            losses = step(*feed(x_train[idx], w_train[idx]))
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + float(v)
            counters["step_in_epoch"] += 1
            counters["global_step"] += 1
            steps_this_call += 1
            if bar:
                bar.update(1)
            if counters["global_step"] % cfg.checkpoint_every == 0:
                _save_checkpoint(ckpt_path, state, counters)
            if stop_after_steps is not None and steps_this_call >= stop_after_steps:
                _save_checkpoint(ckpt_path, state, counters)
                if bar:
                    bar.close()
                return {"interrupted": True, "counters": counters}
        if bar:
            bar.close()
        # end of epoch: validation, history, plateau logic, checkpoint
        counters["train_seconds"] += time.time() - t_epoch
        val = {k: np.asarray(v, np.float64) for k, v in model.validation_losses(tf.constant(x_val)).items()}
        if sharded:  # the mean over every worker's validation share: the same number on all workers
            val = {k: gather(np.array([[v.sum(), len(v)]])).sum(axis=0) for k, v in val.items()}
            val = {k: float(v[0] / v[1]) for k, v in val.items()}
        else:
            val = {k: float(np.mean(v)) for k, v in val.items()}
        monitor = next(iter(val.values()))
        record = {"epoch": epoch + 1, "global_step": counters["global_step"],
                  **{f"train_{k}": v / max(counters["step_in_epoch"], 1) for k, v in sums.items()},
                  **{f"val_{k}": v for k, v in val.items()},
                  "learning_rate": float(next(iter(model.optimizers().values()))[0].learning_rate.numpy()),
                  "epoch_s": round(time.time() - t_epoch, 3), "train_seconds": round(counters["train_seconds"], 3)}
        with history_path.open("a") as fh:
            fh.write(json.dumps(record) + "\n")
        if on_epoch is not None:
            on_epoch(record, lambda feats: SCORERS[kind](model.export(), pre.transform(np.asarray(feats))))
        es, rl = cfg.early_stopping, cfg.reduce_lr
        best = counters["best"]
        if best is None or monitor < best - (es or {}).get("min_delta", 0.0):
            counters["best"], counters["wait"] = monitor, 0
        else:
            counters["wait"] += 1
            if es and counters["wait"] >= es.get("patience", 20):
                counters["stopped"] = True
        if rl:
            if best is not None and monitor > best - rl.get("min_delta", 0.0):
                counters["lr_wait"] += 1
                if counters["lr_wait"] >= rl.get("patience", 8):
                    set_lr(rl.get("factor", 0.5))
                    counters["lr_wait"] = 0
            else:
                counters["lr_wait"] = 0
        counters["epoch"] += 1
        counters["step_in_epoch"] = 0
        _save_checkpoint(ckpt_path, state, counters)

    nets = model.export()
    # the networks as the Scorer runs them (batch norm folded), so the thresholds are the scores' own bits
    val_scores = SCORERS[kind]({k: fold(v) for k, v in nets.items()}, x_val)
    # the classic baselines, fitted on the same training sample (every worker: the same gathered one)
    if sharded:
        per_worker = min(int(min(gather(np.array([len(x_train)])))), FIT_EVENTS // n_workers)
        baselines = fit_baselines(gather(x_train[:per_worker]), gather(w_train[:per_worker]), cfg.seed)
    else:
        baselines = fit_baselines(x_train, w_train, cfg.seed)
    val_scores.update(score_baselines(baselines, x_val))
    if sharded:  # thresholds from the whole SM validation sample, every worker's share
        val_scores = {k: gather(np.asarray(v)) for k, v in val_scores.items()}
    history = [json.loads(line) for line in history_path.read_text().splitlines() if line.strip()]
    return write_model_dir(out, kind=kind, pre=pre, nets=nets, val_scores=val_scores, baselines=baselines,
                           config={"model": kind, "training": cfg.__dict__, "model_config": model_cfg,
                                   "replicas": replicas, "workers": n_workers, "global_batch": global_batch},
                           provenance=data.provenance, composition=data.composition,
                           history_summary={"epochs": len(history), "last": history[-1] if history else None,
                                            "early_stopped": counters["stopped"]})

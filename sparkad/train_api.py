"""`sparkad train` as a function: configuration merge (conf/train.yaml ← --config ← flags) and the call
into the training loop. Kept apart from the loop so that jobs (Spark, scripts) share it."""
from __future__ import annotations

import copy
from pathlib import Path

from .cocktail import CocktailConfig, build_training_data, load_hlf
from .config import load_conf, load_yaml, require_mapping
from .errors import ConfigError


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in (over or {}).items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def resolve_config(kind: str, config_file=None, **overrides) -> tuple[CocktailConfig, dict]:
    conf = require_mapping(load_conf("train"), "conf/train.yaml")
    if config_file:
        conf = _merge(conf, require_mapping(load_yaml(config_file), str(config_file)))
    unknown = set(conf) - {"cocktail", "training", "models"}
    if unknown:
        raise ConfigError(f"train config: unknown section(s) {', '.join(sorted(unknown))}")
    training = _merge(conf.get("training") or {}, (conf.get("models") or {}).get(kind) or {})
    for k in ("epochs", "batch_size"):
        if overrides.get(k) is not None:
            training[k] = overrides[k]
    cocktail = dict(conf.get("cocktail") or {})
    if overrides.get("train_on_data"):
        cocktail["train_on_data"] = True
    return CocktailConfig.from_dict(cocktail), training


def train_from_config(kind, hlf_dir, out, *, config_file=None, progress=True, log=print, strategy=None,
                      stop_after_steps=None, on_epoch=None, shard=None, **overrides) -> dict:
    """``shard=(i, n)``: this is worker i of n and reads only its disjoint share of the HLF."""
    from .training import TrainConfig, train

    cocktail, training = resolve_config(kind, config_file, **overrides)
    df, report = load_hlf(hlf_dir, shard=shard)
    data = build_training_data(df, report, cocktail)
    data.provenance["hlf_dir"] = str(Path(hlf_dir).resolve())
    return train(data, kind, TrainConfig.from_dict(training), out, progress=progress, log=log, strategy=strategy,
                 stop_after_steps=stop_after_steps, on_epoch=on_epoch)

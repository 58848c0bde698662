"""`sparkad train` as a function: configuration merge (conf/train.yaml ← --config ← flags) and the call
into the training loop. Kept apart from the loop so that jobs (Spark, scripts) share it."""
from __future__ import annotations

from pathlib import Path

from sparkad.core import storage
from sparkad.train.cocktail import CocktailConfig, build_training_data, load_hlf
from sparkad.core.config import check_keys, given, load_conf, load_yaml, merge_config, require_mapping
from sparkad.core.errors import ConfigError
from sparkad.model.store import writes_model_dir


SECTIONS = ("cocktail", "training", "models")


def _check_sections(conf, source: str, kind: str) -> dict:
    """One configuration file (conf/train.yaml or --config) on its own, so that an error names the file
    and the key it holds: cocktail, training and every models.<kind> entry, each a mapping of known
    keys with values of the right type (the merged result is checked again)."""
    from sparkad.train.models import MODELS
    from sparkad.train.loop import TrainConfig

    conf = require_mapping(conf if conf is not None else {}, source)
    unknown = sorted(set(conf) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"{source}: unknown section(s) {', '.join(map(str, unknown))} "
                          f"(allowed: {', '.join(SECTIONS)})")
    CocktailConfig.from_dict(conf.get("cocktail"), where=f"{source}: cocktail")
    TrainConfig.from_dict(conf.get("training"), kind, where=f"{source}: training")
    models = require_mapping(conf.get("models") or {}, f"{source}: models")
    check_keys(models, MODELS, f"{source}: models")
    for name, section in models.items():
        TrainConfig.from_dict(section, name, where=f"{source}: models.{name}")
    return conf


def resolve_config(kind: str, config_file=None, **overrides) -> tuple[CocktailConfig, dict]:
    from sparkad.train.loop import TrainConfig

    conf = _check_sections(load_conf("train"), "conf/train.yaml", kind)
    if config_file:
        conf = merge_config(conf, _check_sections(load_yaml(config_file), str(config_file), kind))
    training = merge_config(conf.get("training") or {}, (conf.get("models") or {}).get(kind) or {},
                            given({k: overrides.get(k) for k in ("epochs", "batch_size")}))
    if overrides.get("epochs") is not None:  # an epoch count given for this run replaces a step budget
        training["steps"] = None
    cocktail = dict(conf.get("cocktail") or {})
    if overrides.get("train_on_data"):
        cocktail["train_on_data"] = True
    TrainConfig.from_dict(training, kind)  # the merged result too: --epochs 0 or a default of conf/train.yaml
    return CocktailConfig.from_dict(cocktail), training


@writes_model_dir
def train_from_config(kind, hlf_dir, out, *, config_file=None, progress=True, log=print, strategy=None,
                      stop_after_steps=None, on_epoch=None, shard=None, **overrides) -> dict:
    """``shard=(i, n)``: this is worker i of n and reads only its disjoint share of the HLF."""
    if kind == "jet_vae":  # the dijet search's per-jet image VAE: its own data, configuration and loop
        if strategy is not None or shard is not None:
            raise ConfigError("the jet_vae trains in one process (its distributed training is not built yet)")
        from sparkad.train.jet_vae import train_jet_vae

        return train_jet_vae(hlf_dir, out, config_file=config_file, epochs=overrides.get("epochs"),
                             batch_size=overrides.get("batch_size"), train_on_data=overrides.get("train_on_data"),
                             progress=progress, log=log)
    if kind == "cathode":  # density estimation on the sidebands, a classifier against its SR samples
        if strategy is not None or shard is not None:
            raise ConfigError("cathode trains in one process (its distributed training is not built yet)")
        from sparkad.train.cathode import train_cathode

        return train_cathode(hlf_dir, out, config_file=config_file, signal_region=overrides.get("signal_region"),
                             epochs=overrides.get("epochs"), batch_size=overrides.get("batch_size"), progress=progress,
                             log=log)
    if kind == "cwola":  # CWoLa hunting: k-fold classifiers of signal region against sidebands
        if strategy is not None or shard is not None:
            raise ConfigError("the cwola classifiers train in one process (their distributed training is not built yet)")
        from sparkad.train.cwola import train_cwola

        return train_cwola(hlf_dir, out, config_file=config_file, signal_region=overrides.get("signal_region"),
                           epochs=overrides.get("epochs"), batch_size=overrides.get("batch_size"), progress=progress,
                           log=log)
    from sparkad.train.loop import TrainConfig, train

    cocktail, training = resolve_config(kind, config_file, **overrides)
    cfg = TrainConfig.from_dict(training, kind)  # before the (slow) read of the HLF
    df, report = load_hlf(hlf_dir, shard=shard)
    data = build_training_data(df, report, cocktail)
    data.provenance["hlf_dir"] = hlf_dir if storage.is_remote(storage.location(hlf_dir)) else str(Path(hlf_dir).resolve())
    return train(data, kind, cfg, out, progress=progress, log=log, strategy=strategy,
                 stop_after_steps=stop_after_steps, on_epoch=on_epoch)

"""Training and validation sets from HLF Parquet: the SM cocktail mixed by cross section ×
efficiency (seeds/001 Table 1), by resampling or by weights, with optional signal contamination
(seeds/001 sec. 6), or data used directly (seeds/000 sec. 4)."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.dataset as pads

from .errors import ConfigError, SparkadError


def _read_dataset(d: Path, shard: tuple[int, int] | None):
    """A dataset's rows, or only this worker's disjoint share of them: every n-th Parquet row group
    (round robin over the files' row groups), or every n-th row when there are fewer row groups
    than workers. The shares of the n workers partition the dataset."""
    if shard is None:
        return pads.dataset(str(d), format="parquet").to_table()
    i, n = shard
    import pyarrow as pa
    import pyarrow.parquet as pq
    groups = [(f, rg) for f in sorted(d.glob("*.parquet")) for rg in range(pq.ParquetFile(f).num_row_groups)]
    if len(groups) >= n:
        tables = [pq.ParquetFile(f).read_row_group(rg) for f, rg in groups[i::n]]
        return pa.concat_tables(tables, promote_options="permissive")
    table = pads.dataset(str(d), format="parquet").to_table()
    return table.take(np.arange(i, table.num_rows, n))


def load_hlf(hlf_dir: str | Path, shard: tuple[int, int] | None = None) -> tuple[pd.DataFrame, dict]:
    """All rows of a complete extraction output (refuses a folder without ``_report.json``), or with
    ``shard=(i, n)`` worker i's disjoint share of every dataset (distributed training)."""
    hlf_dir = Path(hlf_dir)
    report_path = hlf_dir / "_report.json"
    if not report_path.is_file():
        raise SparkadError(f"{hlf_dir}: no _report.json — not an HLF folder, or its extraction did not complete")
    report = json.loads(report_path.read_text())
    frames = []
    for name in report["datasets"]:
        d = hlf_dir / name
        if not d.is_dir():
            raise SparkadError(f"{d}: dataset folder listed in _report.json is missing")
        frames.append(_read_dataset(d, shard).to_pandas())
    df = pd.concat(frames, ignore_index=True)
    for c in ("dataset", "label"):
        df[c] = df[c].astype(str)
    report["content_hash"] = hashlib.sha256(report_path.read_bytes()).hexdigest()[:16]
    if shard is not None:
        report["shard"] = list(shard)
    return df, report


@dataclass
class CocktailConfig:
    background: list[str] | None = None  # datasets forming the SM cocktail (default: every MC dataset)
    mode: str = "resample"               # resample | weights
    validation_fraction: float = 0.5
    n_train: int | None = None           # resample mode: events to draw (default: as many as available)
    contamination: dict | None = None    # {"dataset": name, "fraction": f}
    train_on_data: bool = False          # seeds/000 sec. 4: train on the data datasets themselves
    seed: int = 1

    @classmethod
    def from_dict(cls, d: dict | None) -> "CocktailConfig":
        d = dict(d or {})
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"cocktail: unknown key(s) {', '.join(sorted(unknown))}")
        cfg = cls(**d)
        if cfg.mode not in ("resample", "weights"):
            raise ConfigError(f"cocktail.mode must be 'resample' or 'weights', got {cfg.mode!r}")
        if not 0 < cfg.validation_fraction < 1:
            raise ConfigError(f"cocktail.validation_fraction must be in (0, 1), got {cfg.validation_fraction}")
        return cfg


@dataclass
class TrainingData:
    features: list[str]
    x_train: np.ndarray
    w_train: np.ndarray
    x_val: np.ndarray
    w_val: np.ndarray
    composition: dict
    provenance: dict = field(default_factory=dict)


def build_training_data(df: pd.DataFrame, report: dict, cfg: CocktailConfig) -> TrainingData:
    features = list(report["features"])
    rng = np.random.default_rng(cfg.seed)
    is_data = {name: d["is_data"] for name, d in report["datasets"].items()}
    if cfg.train_on_data:
        names = [n for n, data in is_data.items() if data]
        if not names:
            raise ConfigError("train_on_data: the HLF folder has no data dataset")
    else:
        names = cfg.background or [n for n, data in is_data.items() if not data]
        missing = [n for n in names if n not in is_data]
        if missing:
            raise ConfigError(f"cocktail.background: dataset(s) {', '.join(missing)} not in the HLF folder "
                              f"(have {', '.join(is_data)})")
        if not names:
            raise ConfigError("the HLF folder has no MC dataset for an SM cocktail")

    train_parts, val_parts, composition = [], [], {}
    total_w = sum(float(df.loc[df.dataset == n, "weight"].sum()) for n in names)
    for n in names:
        part = df[df.dataset == n]
        if len(part) < 2:
            raise ConfigError(f"dataset {n}: {len(part)} selected events, too few to train on")
        idx = rng.permutation(len(part))
        n_val = max(1, int(round(cfg.validation_fraction * len(part))))
        val_parts.append(part.iloc[idx[:n_val]])
        train_parts.append(part.iloc[idx[n_val:]])
        yield_ = float(part.weight.sum())
        composition[n] = {"label": str(part.label.iloc[0]), "events": int(len(part)), "expected_yield": yield_,
                          "fraction": yield_ / total_w if total_w > 0 else 0.0}

    def mix(parts, n_target, unweighted):
        """Resample to cross-section proportions (unweighted) or keep all events with weights."""
        if cfg.train_on_data:
            allp = pd.concat(parts)
            return allp, np.ones(len(allp))
        if not unweighted:
            allp = pd.concat(parts)
            w = allp.weight.to_numpy(np.float64)
            return allp, w / w.mean()
        # default size: the largest cocktail that needs no event twice (the scarcest process limits it);
        # an explicit n_train beyond that resamples with replacement, and says so
        capacity = min(len(p) / composition[p.dataset.iloc[0]]["fraction"] for p in parts
                       if composition[p.dataset.iloc[0]]["fraction"] > 0)
        n_total = n_target or int(np.floor(capacity))
        out = []
        for p in parts:
            k = int(round(n_total * composition[p.dataset.iloc[0]]["fraction"]))
            if k == 0:
                continue
            take = rng.choice(len(p), size=k, replace=k > len(p))
            out.append(p.iloc[take])
        allp = pd.concat(out)
        return allp, np.ones(len(allp))

    train, w_train = mix(train_parts, cfg.n_train, cfg.mode == "resample")
    val, w_val = mix(val_parts, None, True)  # thresholds: an unweighted SM sample without duplicates
    duplicated = int(train.index.duplicated().sum())

    if cfg.contamination:
        sig = df[df.dataset == cfg.contamination["dataset"]]
        frac = float(cfg.contamination["fraction"])
        if sig.empty:
            raise ConfigError(f"contamination: no events of dataset {cfg.contamination['dataset']!r}")
        k = int(round(frac * len(train) / (1 - frac)))
        take = sig.iloc[rng.choice(len(sig), size=k, replace=k > len(sig))]
        train = pd.concat([train, take])
        w_train = np.concatenate([w_train, np.full(k, w_train.mean())])
        composition["contamination"] = {"dataset": cfg.contamination["dataset"], "events": k, "fraction": frac}

    order = rng.permutation(len(train))
    x_train = train[features].to_numpy(np.float64)[order]
    return TrainingData(
        features=features, x_train=x_train, w_train=w_train[order].astype(np.float32),
        x_val=val[features].to_numpy(np.float64), w_val=w_val.astype(np.float32), composition=composition,
        provenance={"hlf_report_hash": report.get("content_hash"), "feature_set": report.get("feature_set"),
                    "selection": report.get("selection", {}).get("name"), "datasets": names,
                    "n_train": int(len(x_train)), "n_validation": int(len(val)), "cocktail": cfg.__dict__,
                    "duplicated_training_events": duplicated, "shard": report.get("shard")},
    )

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

from sparkad.core import storage
from sparkad.core.config import as_number, check_keys, require_mapping
from sparkad.core.errors import ConfigError, InputFileError, SparkadError


def _arrow_problem(e: Exception) -> str:
    """The first line of an Arrow/OS error, without the Python class name."""
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def _numeric(t) -> bool:
    import pyarrow as pa
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)


def _check_file(f: Path, features: list[str]) -> int:
    """Open one Parquet file of a dataset and check the columns the cocktail needs, before any rows
    are read: a file without them would be NaN-filled by the concatenation (a missing ``weight``
    silently gives its dataset zero yield, a missing feature looks like NaN features)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    try:
        meta = pq.read_metadata(f)
        schema = meta.schema.to_arrow_schema()
    except (pa.ArrowException, OSError) as e:
        raise InputFileError(f, f"not a readable Parquet file ({_arrow_problem(e)})") from None
    missing = [c for c in ("dataset", "label", "weight", *features) if c not in schema.names]
    if missing:
        raise InputFileError(f, f"lacks column(s) {', '.join(missing)} (needed: dataset, label, weight and the HLF "
                                f"report's features)")
    bad = [f"{c} ({schema.field(c).type})" for c in ("weight", *features) if not _numeric(schema.field(c).type)]
    if bad:
        raise InputFileError(f, f"non-numeric column(s) {', '.join(bad)}")
    return meta.num_row_groups


def _read(f: Path, row_group: int | None = None):
    """All rows of one file (or one row group); a corrupt page is an error naming the file."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    try:
        with pq.ParquetFile(f) as pf:
            return pf.read() if row_group is None else pf.read_row_group(row_group)
    except (pa.ArrowException, OSError) as e:
        raise InputFileError(f, f"cannot read Parquet data ({_arrow_problem(e)})") from None


def _read_dataset(d: Path, shard: tuple[int, int] | None, features: list[str]):
    """A dataset's rows, or only this worker's disjoint share of them: every n-th Parquet row group
    (round robin over the files' row groups), or every n-th row when there are fewer row groups
    than workers. The shares of the n workers partition the dataset. Every file is checked for the
    needed columns and finite weights first; a problem names the file."""
    import pyarrow as pa
    row_groups = {f: _check_file(f, features) for f in storage.list_files(d, ".parquet")}
    groups = [(f, rg) for f, k in row_groups.items() for rg in range(k)]
    by_group = shard is not None and len(groups) >= shard[1]
    if by_group:
        tables = [(f, _read(f, rg)) for f, rg in groups[shard[0]::shard[1]]]
    else:
        tables = [(f, _read(f)) for f in row_groups]
    for f, t in tables:
        w = t.column("weight").to_numpy(zero_copy_only=False).astype(np.float64)
        bad = int((~np.isfinite(w)).sum())
        if bad:
            raise InputFileError(f, f"non-finite weight in {bad} of {len(w)} events")
    if not tables:
        return None
    table = pa.concat_tables([t for _, t in tables], promote_options="permissive")
    if shard is not None and not by_group:
        table = table.take(np.arange(shard[0], table.num_rows, shard[1]))
    return table


def load_hlf(hlf_dir: str | Path, shard: tuple[int, int] | None = None) -> tuple[pd.DataFrame, dict]:
    """All rows of a complete extraction output (refuses a folder without ``_report.json``), or with
    ``shard=(i, n)`` worker i's disjoint share of every dataset (distributed training)."""
    hlf_dir = storage.location(hlf_dir)
    report_path = storage.join(hlf_dir, "_report.json")
    if not storage.is_file(report_path):
        raise SparkadError(f"{hlf_dir}: no _report.json — not an HLF folder, or its extraction did not complete")
    try:
        report_bytes = storage.read_bytes(report_path)
        report = json.loads(report_bytes.decode())
    except (OSError, ValueError) as e:
        raise InputFileError(report_path, f"not a readable JSON report ({e})") from None
    if not isinstance(report, dict) or not isinstance(report.get("datasets"), dict) \
            or not isinstance(report.get("features"), list):
        raise InputFileError(report_path, "not an HLF extraction report (needs 'datasets' and 'features')")
    features = [str(c) for c in report["features"]]
    frames = []
    for name, info in report["datasets"].items():
        d = storage.join(hlf_dir, name)
        if not storage.is_dir(d):
            raise SparkadError(f"{d}: dataset folder listed in _report.json is missing")
        table = _read_dataset(d, shard, features)
        if table is None:
            written = info.get("written", 0) if isinstance(info, dict) else 0
            if written:
                raise SparkadError(f"{d}: no Parquet files, but _report.json says {written} events were written")
            continue
        frames.append(table.to_pandas())
    if not frames:
        raise SparkadError(f"{hlf_dir}: no Parquet files in any dataset folder")
    df = pd.concat(frames, ignore_index=True)
    for c in ("dataset", "label"):
        df[c] = df[c].astype(str)
    report["content_hash"] = hashlib.sha256(report_bytes).hexdigest()[:16]
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
    def from_dict(cls, d: dict | None, where: str = "cocktail") -> "CocktailConfig":
        """Validated configuration; ``where`` (the file and section) prefixes every error, which names
        the key: a string for ``background`` would otherwise be iterated per character, a string
        ``n_train`` or a contamination without ``fraction`` would fail deep inside the mixing."""
        d = dict(require_mapping(d if d is not None else {}, where))
        check_keys(d, cls.__dataclass_fields__, where)
        cfg = cls(**d)
        bg = cfg.background
        if bg is not None:
            if not isinstance(bg, list) or not bg or not all(isinstance(n, str) and n for n in bg):
                raise ConfigError(f"{where}.background: expected a non-empty list of dataset names (or null: every "
                                  f"MC dataset), got {bg!r}")
            cfg.background = list(bg)
        if cfg.mode not in ("resample", "weights"):
            raise ConfigError(f"{where}.mode must be 'resample' or 'weights', got {cfg.mode!r}")
        vf = as_number(cfg.validation_fraction, f"{where}.validation_fraction")
        if not (0 < vf < 1 or (vf == 0 and cfg.train_on_data is True)):
            raise ConfigError(f"{where}.validation_fraction must be in (0, 1) (or 0 with train_on_data: train on "
                              f"every event, seeds/000 sec. 4), got {cfg.validation_fraction!r}")
        cfg.validation_fraction = vf
        if cfg.n_train is not None and not is_int(cfg.n_train, 1):
            raise ConfigError(f"{where}.n_train must be a positive integer (or null: as many as the sample holds), "
                              f"got {cfg.n_train!r}")
        if cfg.contamination is not None:
            c = require_mapping(cfg.contamination, f"{where}.contamination")
            check_keys(c, ("dataset", "fraction"), f"{where}.contamination")
            for k in ("dataset", "fraction"):
                if k not in c:
                    raise ConfigError(f"{where}.contamination: missing key {k!r} (e.g. {{dataset: lq_btau, "
                                      f"fraction: 0.001}})")
            if not isinstance(c["dataset"], str) or not c["dataset"]:
                raise ConfigError(f"{where}.contamination.dataset must be a dataset name, got {c['dataset']!r}")
            frac = as_number(c["fraction"], f"{where}.contamination.fraction")
            if not 0 <= frac < 1:  # the signal share of the training set: 1 would need infinitely many events
                raise ConfigError(f"{where}.contamination.fraction must be in [0, 1), got {c['fraction']!r}")
            cfg.contamination = {"dataset": c["dataset"], "fraction": frac}
        if not isinstance(cfg.train_on_data, bool):
            raise ConfigError(f"{where}.train_on_data must be true or false, got {cfg.train_on_data!r}")
        if not is_int(cfg.seed, 0):
            raise ConfigError(f"{where}.seed must be a non-negative integer, got {cfg.seed!r}")
        return cfg


def is_int(v, minimum: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= minimum


@dataclass
class TrainingData:
    features: list[str]
    x_train: np.ndarray
    w_train: np.ndarray
    x_val: np.ndarray
    w_val: np.ndarray
    composition: dict
    provenance: dict = field(default_factory=dict)


def _check_finite_features(part: pd.DataFrame, features: list[str], where: str) -> None:
    """NaN/inf features of a dataset are refused before it is split: in the validation half they
    would pass training and break the thresholds and plots only at the end."""
    from sparkad.model.preprocessing import check_finite
    check_finite(part[features].to_numpy(np.float64), features, where)


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
        _check_finite_features(part, features, f"dataset {n}")
        if not cfg.train_on_data and cfg.mode == "resample" and not part.weight.sum() > 0:
            raise ConfigError(f"dataset {n}: total weight {part.weight.sum():g} is not positive; it cannot be "
                              f"resampled in cross-section proportions (drop it from cocktail.background)")
        if cfg.validation_fraction == 0:  # train_on_data on every event: thresholds from the same events
            val_parts.append(part)
            train_parts.append(part)
        else:
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
        _check_finite_features(sig, features, f"dataset {cfg.contamination['dataset']}")
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

"""Model directories: the self-describing artifact of training, and the scorer that loads it.

MODEL_DIR/
  model.json        kind, features, pre-processing, score names, thresholds, training config,
                    data provenance, cocktail composition, versions, content hash (written last:
                    its presence marks a complete model)
  networks.npz      exported network weights and the fitted baselines (numpy; scoring needs no TensorFlow)
  validation_scores.json   per-score histograms of the SM validation sample
  history.jsonl     per-epoch training and validation metrics
  checkpoint/       training state for resuming (not needed to score)
"""
from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import numpy as np

from sparkad.core.errors import SparkadError
from sparkad.model.baselines import NAMES as BASELINE_NAMES, from_npz_entries, score_baselines, to_npz_entries
from sparkad.model.networks import fold, pack, unpack
from sparkad.model.scores import SCORERS
from sparkad.core.atomic import write_bytes_atomic, write_json_atomic
from sparkad.model.preprocessing import Preprocessor

THRESHOLD_PPM = (1000.0, 100.0, 10.0, 5.4)


def exact_thresholds(scores: np.ndarray, ppm=THRESHOLD_PPM) -> dict:
    """Score value t per background fraction: exactly k = floor(ppm·1e-6·N) validation events have
    score > t (t is the (k+1)-th largest score; ties at t can only lower the count). None where the
    sample is too small to hold one event at that fraction."""
    s = np.sort(np.asarray(scores, np.float64))[::-1]
    n = len(s)
    out = {}
    for p in ppm:
        k = int(np.floor(p * n / 1e6 + 1e-9))  # p·N/1e6, safe from 100e-6·1e6 = 99.999…
        key = f"{p:g}ppm"
        if k < 1 or k >= n:
            out[key] = {"value": None, "k": k, "n": n, "note": f"needs at least {int(np.ceil(1e6 / p))} validation events"}
        else:
            out[key] = {"value": float(s[k]), "k": k, "n": n, "passing": int((s > s[k]).sum())}
    return out


def _hist(values: np.ndarray, bins: int = 100) -> dict:
    v = np.asarray(values, np.float64)
    lo, hi = float(np.min(v)), float(np.max(v))
    if hi <= lo:
        hi = lo + 1.0
    counts, edges = np.histogram(v, bins=bins, range=(lo, hi))
    return {"edges": edges.tolist(), "counts": counts.tolist()}


def write_validation_scores(val_scores: dict, out: Path) -> None:
    """validation_scores.json: per score, a 100-bin histogram of the SM validation sample (the scoring
    pass's score binning, ``validation_edges``)."""
    write_json_atomic({k: _hist(v) for k, v in val_scores.items()}, Path(out) / "validation_scores.json")


def validation_edges(model_dir, name: str) -> np.ndarray:
    """A score's histogram binning: its validation histogram's edges (100 bins over the range of the
    SM validation scores), or 100 bins over [0, 1] when the model directory has none for it."""
    try:
        doc = json.loads((Path(model_dir) / "validation_scores.json").read_text())
    except (OSError, ValueError):
        doc = {}
    e = doc.get(name, {}).get("edges") if isinstance(doc, dict) else None
    return np.asarray(e, np.float64) if e else np.linspace(0.0, 1.0, 101)


def write_model_dir(out: Path, *, kind: str, pre: Preprocessor, nets: dict, val_scores: dict, config: dict,
                    provenance: dict, composition: dict, history_summary: dict, baselines: dict | None = None) -> dict:
    """``val_scores``: the model's scores, then the baselines' (``sparkad.model.baselines``), on the SM
    validation sample; ``baselines``: the fitted baseline arrays."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "model.json").unlink(missing_ok=True)  # incomplete until rewritten at the end
    spec, arrays = pack(nets)
    if baselines:
        arrays.update(to_npz_entries(baselines))
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    blob = buf.getvalue()
    write_bytes_atomic(blob, out / "networks.npz")
    write_validation_scores(val_scores, out)
    doc = {
        "kind": kind,
        "score_names": list(val_scores),
        "baseline_scores": [n for n in val_scores if n in BASELINE_NAMES] if baselines else [],
        "features": pre.features,
        "preprocessing": pre.to_dict(),
        "n_inputs": pre.n_inputs,
        "input_names": pre.input_names,
        "networks": spec,
        "thresholds": {name: exact_thresholds(v) for name, v in val_scores.items()},
        "config": config,
        "provenance": provenance,
        "composition": composition,
        "history": history_summary,
    }
    from sparkad.core.version import code_version
    doc["code_version"] = code_version()
    doc["content_hash"] = content_hash(doc, blob)
    write_json_atomic(doc, out / "model.json")
    return doc


def start_model_dir(out: Path, nets: dict) -> tuple[dict, bytes]:
    """Begin writing a model directory: the folder made, an old model.json removed (the directory is incomplete
    until `seal_model_dir`), networks.npz written; returns (the networks' JSON spec, the npz bytes)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "model.json").unlink(missing_ok=True)
    spec, arrays = pack(nets)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    blob = buf.getvalue()
    write_bytes_atomic(blob, out / "networks.npz")
    return spec, blob


def seal_model_dir(out: Path, doc: dict, blob: bytes) -> dict:
    """model.json, with the code version and the content hash over it and networks.npz, written last."""
    from sparkad.core.version import code_version

    doc = {**doc, "code_version": code_version()}
    doc["content_hash"] = content_hash(doc, blob)
    write_json_atomic(doc, Path(out) / "model.json")
    return doc


def content_hash(meta: dict, npz_bytes: bytes) -> str:
    """sha256 of networks.npz and of model.json's content (without the hash itself), 20 hex digits."""
    body = json.dumps({k: v for k, v in meta.items() if k != "content_hash"}, sort_keys=True, default=str).encode()
    return hashlib.sha256(npz_bytes + body).hexdigest()[:20]


def read_model_files(model_dir: str | Path) -> tuple[bytes, bytes]:
    """(model.json, networks.npz) bytes: what executors need to score, shipped without a shared filesystem."""
    model_dir = Path(model_dir)
    if not (model_dir / "model.json").is_file():
        raise SparkadError(f"{model_dir}: not a complete sparkad model directory (no model.json)")
    try:
        return (model_dir / "model.json").read_bytes(), (model_dir / "networks.npz").read_bytes()
    except OSError as e:
        raise SparkadError(f"{model_dir}: unreadable model files ({e})") from None


def load_model(model_dir, files: tuple[bytes, bytes] | None = None) -> tuple[dict, dict[str, np.ndarray]]:
    """(model.json's content, networks.npz's arrays) of a model directory (or of its shipped files), the
    content hash checked: what was trained is what is scored."""
    model_dir = Path(model_dir)
    meta_bytes, npz_bytes = files if files is not None else read_model_files(model_dir)
    try:
        meta = json.loads(meta_bytes)
    except ValueError as e:
        raise SparkadError(f"{model_dir}/model.json: not valid JSON ({e})") from None
    if not isinstance(meta, dict):
        raise SparkadError(f"{model_dir}: unreadable model files (model.json holds no mapping)")
    expected = meta.get("content_hash")
    if expected and content_hash(meta, npz_bytes) != expected:
        # a truncated copy, an edited model.json, another networks.npz: plausible but wrong scores
        raise SparkadError(f"{model_dir}: model.json and networks.npz do not match their content hash "
                           f"{expected} (modified or corrupted; restore or retrain the model)")
    try:
        with np.load(io.BytesIO(npz_bytes)) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise SparkadError(f"{model_dir}: unreadable model files ({type(e).__name__}: {e})") from None
    return meta, arrays


def open_scorer(model_dir, files: tuple[bytes, bytes] | None = None, scores=None, options: dict | None = None):
    """The scorer of any model kind for the batch scoring pass: a ``Scorer`` (HLF feature vectors) or a
    ``sparkad.model.jet_vae.JetVAEScorer`` (jet constituents → jet images); both give ``score_arrow``,
    ``features``, ``score_names``, ``thresholds`` and ``histogram_edges``. ``options``: what the kind
    needs beside its files (a jet VAE: ``mjj_thresholds``, read on the driver by ``scorer_options``)."""
    meta_bytes = (files[0] if files is not None else read_model_files(model_dir)[0])
    try:
        kind = json.loads(meta_bytes).get("kind")
    except (ValueError, AttributeError):
        kind = None
    if kind == "jet_vae":
        from sparkad.model.jet_vae import JetVAEScorer
        return JetVAEScorer(model_dir, files=files, scores=scores, **(options or {}))
    if kind in ("cwola", "cathode") and not options:
        from sparkad.model.cwola import CWoLaScorer
        return CWoLaScorer(model_dir, files=files, scores=scores)
    if options:
        raise SparkadError(f"{model_dir}: a {kind} model takes no options {sorted(options)}")
    return Scorer(model_dir, files=files, scores=scores)


def scorer_options(model_dir) -> dict:
    """What the executors need beside a model's files: a jet VAE's stored L_T(mjj) thresholds (so that its
    L − L_T(mjj) scores exist), nothing for the other kinds."""
    meta = json.loads(read_model_files(model_dir)[0])
    if isinstance(meta, dict) and meta.get("kind") == "jet_vae":
        from sparkad.model.jet_vae import JetVAEScorer
        doc = JetVAEScorer(model_dir).stored_thresholds()
        return {"mjj_thresholds": doc} if doc else {}
    return {}


class Scorer:
    """A trained model loaded for scoring: features batch → named scores (numpy, deterministic)."""

    #: the scoring pass's default sizes for this kind: events per Arrow batch, events per task
    batch_rows = 200_000
    task_rows = 2_000_000

    def __init__(self, model_dir: str | Path, files: tuple[bytes, bytes] | None = None, scores=None):
        """``scores``: the names to compute (a subset of the model's, e.g. ["l1"]); None: all of them.
        Only what those scores need runs (``sparkad.model.scores``); ``score_names`` lists them in the
        model's order, ``all_score_names`` every score the model has."""
        self.model_dir = Path(model_dir)
        self.meta, arrays = load_model(self.model_dir, files)
        self.content_hash = self.meta.get("content_hash")
        try:
            self.kind = self.meta["kind"]
            if self.kind in ("jet_vae", "cwola", "cathode"):
                what = "jet constituents" if self.kind == "jet_vae" else "features with the events' identifiers (folds)"
                raise SparkadError(f"{self.model_dir}: a {self.kind} (dijet) model scores {what}, not a vector of "
                                   f"HLF features: use `sparkad score`, `sparkad evaluate` or `sparkad bumphunt` "
                                   f"(in code: sparkad.model.directory.open_scorer)")
            if self.kind not in SCORERS:
                raise SparkadError(f"{self.model_dir}: unknown model kind {self.kind!r}")
            self.features = list(self.meta["features"])
            self.all_score_names = list(self.meta["score_names"])
            self.score_names = self._chosen(scores)
            self.pre = Preprocessor.from_dict(self.meta["preprocessing"])
            self.nets = {k: fold(v) for k, v in unpack(self.meta["networks"], arrays).items()}
            self.baselines = from_npz_entries(arrays, self.pre.n_inputs) if self.meta.get("baseline_scores") else None
            self.thresholds = self.meta["thresholds"]
            # one event through the networks: shapes that do not chain fail here, not in a Spark task
            self._score_block(np.zeros((1, self.pre.n_inputs), np.float32))
        except SparkadError:
            raise
        except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError, zipfile.BadZipFile) as e:
            what = f"missing entry {e}" if isinstance(e, KeyError) else f"{type(e).__name__}: {e}"
            raise SparkadError(f"{self.model_dir}: unreadable model files ({what})") from None

    def _chosen(self, scores) -> list[str]:
        if scores is None:
            return list(self.all_score_names)
        scores = [scores] if isinstance(scores, str) else list(scores)
        unknown = [s for s in scores if s not in self.all_score_names]
        if unknown or not scores:
            raise SparkadError(f"{self.model_dir}: model has no score(s) {', '.join(map(repr, unknown)) or '(none given)'} "
                               f"(scores: {', '.join(self.all_score_names)})")
        return [s for s in self.all_score_names if s in set(scores)]

    def check_columns(self, columns, source: str = "input") -> None:
        missing = [f for f in self.features if f not in set(columns)]
        if missing:
            raise SparkadError(f"{source}: lacks feature(s) {', '.join(missing)} that model {self.model_dir} "
                               f"was trained on (feature set {self.meta['provenance'].get('feature_set')})")

    #: events per pass through the networks: bounds the intermediates and keeps them in cache. An
    #: event's score does not depend on it (nor on the batch, the engine or the thread count): the
    #: networks multiply in a fixed order (``sparkad.model.dense``) and every other step is per event
    ROW_BLOCK = 4096

    def score(self, features: np.ndarray) -> dict[str, np.ndarray]:
        """events × features (model order) → {score name: array}; the same bits whatever the batch,
        the engine, the process's BLAS thread count or the CPU (tests/model/test_determinism.py)."""
        x = self.pre.transform(np.asarray(features))
        b = self.ROW_BLOCK
        with np.errstate(invalid="ignore"):  # NaN features give NaN scores: counted by the callers
            parts = [self._score_block(x[i:i + b]) for i in range(0, len(x), b)]
            if not parts:
                parts = [self._score_block(x[:0])]
        if len(parts) == 1:
            return parts[0]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def _score_block(self, x: np.ndarray) -> dict[str, np.ndarray]:
        base = set(self.baseline_scores)
        own = [s for s in self.score_names if s not in base]
        out = SCORERS[self.kind](self.nets, x, own) if own else {}
        if self.baselines is not None and base & set(self.score_names):
            out.update(score_baselines(self.baselines, x, base & set(self.score_names)))
        return {k: out[k] for k in self.score_names}

    @property
    def baseline_scores(self) -> list[str]:
        """The names among ``score_names`` that are classic baselines, not the model's own scores."""
        return list(self.meta.get("baseline_scores") or [])

    def score_arrow(self, batch) -> dict[str, np.ndarray]:
        """The chosen scores of a pyarrow batch or table holding the model's feature columns."""
        names = batch.schema.names
        self.check_columns(names, "HLF input")
        x = np.column_stack([batch.column(names.index(f)).to_numpy(zero_copy_only=False) for f in self.features]) \
            if batch.num_rows else np.zeros((0, len(self.features)))
        return self.score(x.astype(np.float64, copy=False))

    def histogram_edges(self, name: str) -> np.ndarray:
        return validation_edges(self.model_dir, name)

    def score_frame(self, df) -> dict[str, np.ndarray]:
        self.check_columns(df.columns)
        return self.score(df[self.features].to_numpy(np.float64))

    def threshold(self, score: str, ppm: float) -> float | None:
        return self.thresholds[score][f"{ppm:g}ppm"]["value"]

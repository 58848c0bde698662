"""CWoLa hunting (Classification Without Labels, seeds/002–003; Collins, Howe, Nachman 2018–19) for scoring:
numpy only (what executors import).

A classifier is trained to tell the events of a signal region in mjj (SR) from those of the sidebands next
to it (SB), on features other than mjj (the LHC Olympics set: mJ1, ΔmJ, τ21_J1, τ21_J2). Without a signal
the two look alike (the features barely depend on mjj) and the classifier learns nothing; a resonance in the
SR with unusual jets makes them separable, and the classifier's output becomes an anomaly score. Every event
is scored by a network that never saw it: events go to one of k folds by a hash of (run, luminosityBlock,
event) (`event_folds`), fold i's network is trained on the other folds, and scores fold i's events — in
training and, identically, in the scoring pass over any dataset.

`CWoLaScorer` loads a model directory written by ``sparkad.train.cwola`` (model.json + networks.npz, a content
hash over both) and gives the batch scoring pass's interface (``sparkad.model.directory.open_scorer``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from sparkad.core.errors import SparkadError
from sparkad.model.directory import load_model, validation_edges
from sparkad.model.networks import fold, forward, unpack

KIND = "cwola"
SCORE = "cwola"  # the classifier's logit: log p(SR | x) / p(SB | x), larger = more signal-region-like
#: fold-classifier kinds this scorer loads: CWoLa (SR against sidebands) and CATHODE (SR data against
#: samples of the background density interpolated into the SR, sparkad.train.cathode); the score is the kind
KINDS = ("cwola", "cathode")
ID_COLUMNS = ("run", "luminosityBlock", "event")


def event_folds(run, lumi, event, k: int) -> np.ndarray:
    """The fold (0..k−1) of each event: splitmix64 of (run << 40) ^ (luminosityBlock << 20) ^ event, mod k —
    the same on the driver, in every worker and in training, whatever the batch."""
    x = (np.asarray(run).astype(np.uint64) << np.uint64(40)) ^ (np.asarray(lumi).astype(np.uint64) << np.uint64(20)) \
        ^ np.asarray(event).astype(np.uint64)
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return (x % np.uint64(k)).astype(np.int64)


def mjj_regions(mjj, signal_region, sideband_width: float) -> np.ndarray:
    """1 in the signal region [lo, hi), 0 in the sidebands [lo − w, lo) and [hi, hi + w), −1 elsewhere (and NaN)."""
    lo, hi = float(signal_region[0]), float(signal_region[1])
    m = np.asarray(mjj, np.float64)
    out = np.full(m.shape, -1, np.int8)
    out[((m >= lo - sideband_width) & (m < lo)) | ((m >= hi) & (m < hi + sideband_width))] = 0
    out[(m >= lo) & (m < hi)] = 1
    return out


def classifier_logits(nets: list, x: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """Each event's logit from its fold's network (x standardised, float32 in; float64 out)."""
    out = np.full(len(x), np.nan)
    for i, net in enumerate(nets):
        rows = np.flatnonzero(folds == i)
        if rows.size:
            out[rows] = forward(net, np.ascontiguousarray(x[rows], np.float32))[:, 0].astype(np.float64)
    return out


class CWoLaScorer:
    """A trained CWoLa (or CATHODE) fold classifier loaded for scoring (the interface of
    ``sparkad.model.directory.Scorer``); its one score is named after its kind."""

    pre = None  # standardisation is its own (``mean``, ``scale``)
    baseline_scores: list = []
    default_ppm = 10_000.0  # the stored threshold selecting 1 % of the signal region's events
    threshold_reference = "its signal region's events (out-of-fold scores)"
    batch_rows = 200_000
    task_rows = 2_000_000

    def __init__(self, model_dir: str | Path, files: tuple[bytes, bytes] | None = None, scores=None):
        self.model_dir = Path(model_dir)
        self.meta, arrays = load_model(self.model_dir, files)
        self.kind = self.meta.get("kind")
        if self.kind not in KINDS:
            raise SparkadError(f"{self.model_dir}: a {self.kind} model, not a fold classifier ({', '.join(KINDS)})")
        self.content_hash = self.meta.get("content_hash")
        try:
            self.features = list(self.meta["features"])
            self.mean = np.asarray(self.meta["standardise"]["mean"], np.float64)
            self.scale = np.asarray(self.meta["standardise"]["scale"], np.float64)
            self.k = int(self.meta["folds"])
            nets = {k: fold(v) for k, v in unpack(self.meta["networks"], arrays).items()}
            self.nets = [nets[f"fold{i}"] for i in range(self.k)]
            self.thresholds = self.meta["thresholds"]
        except (KeyError, TypeError, ValueError) as e:
            raise SparkadError(f"{self.model_dir}: unreadable model files ({type(e).__name__}: {e})") from None
        name = self.kind
        self.all_score_names = [name]
        chosen = [name] if scores is None else ([scores] if isinstance(scores, str) else list(scores))
        if chosen != [name]:
            raise SparkadError(f"{self.model_dir}: model has no score(s) {', '.join(s for s in chosen if s != name) or '(none given)'}"
                               f" (scores: {name})")
        self.score_names = [name]

    def check_columns(self, columns, source: str = "input") -> None:
        missing = [f for f in (*self.features, *ID_COLUMNS) if f not in set(columns)]
        if missing:
            raise SparkadError(f"{source}: lacks column(s) {', '.join(missing)} that the CWoLa classifier "
                               f"{self.model_dir} scores (extract with `sparkad extract --analysis dijet`)")

    def score_columns(self, x: np.ndarray, run, lumi, event) -> np.ndarray:
        """Logits of events × features (model order) with their identifiers (they choose the fold)."""
        z = (np.asarray(x, np.float64) - self.mean) / self.scale
        with np.errstate(invalid="ignore"):
            return classifier_logits(self.nets, z, event_folds(run, lumi, event, self.k))

    def score_arrow(self, batch) -> dict[str, np.ndarray]:
        names = batch.schema.names
        self.check_columns(names, "scoring input")
        col = lambda c: batch.column(names.index(c)).to_numpy(zero_copy_only=False)  # noqa: E731
        x = np.column_stack([col(f) for f in self.features]) if batch.num_rows else np.zeros((0, len(self.features)))
        return {self.kind: self.score_columns(x, *(col(c) for c in ID_COLUMNS))}

    def histogram_edges(self, name: str) -> np.ndarray:
        return validation_edges(self.model_dir, name)

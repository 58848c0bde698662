"""The per-jet convolutional VAE of seeds/004 for scoring: numpy only (what executors import).

A jet's loss is L = Σ_pixels (x − x̂)² + β · D_KL (seeds/004 eq. 1–3; β = 5e-4), with x the jet image
(sparkad.model.jet_images), x̂ the decoder's reconstruction from z = μ_z (deterministic scoring) and
D_KL = −½ Σ (1 + log σ² − μ² − σ²) against the N(0, I) prior. The two jets' losses combine into the event
scores of seeds/004 Fig. 4, each a named score so that "score > L_T" is that strategy's selection:

  j1 = L1, j2 = L2 (one jet above L_T), sum = L1 + L2, both = min(L1, L2) (both jets above L_T),
  either = max(L1, L2) (one or the other above L_T).

`JetVAEScorer` loads a model directory written by ``sparkad.train.jet_vae`` (model.json + networks.npz, a
content hash over both) and scores a dijet table (the constituent columns of `sparkad extract --analysis
dijet`)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from sparkad.core.errors import SparkadError
from sparkad.model import libm
from sparkad.model.directory import load_model
from sparkad.model.jet_images import constituents_of, jet_images
from sparkad.model.networks import fold, forward, unpack

STRATEGIES = ("j1", "j2", "sum", "both", "either")
#: the score a scoring pass selects on by default (seeds/004: both jets above L_T keeps the QCD tail smallest)
HEADLINE = "both"
KIND = "jet_vae"
#: the mjj-dependent thresholds fitted for this model (`sparkad bumphunt --save-threshold`), beside model.json
MJJ_THRESHOLDS = "mjj_thresholds.json"
#: jets scored per network pass (the im2col buffers of a block stay ~100 MB)
SCORE_BATCH = 2048


def jet_losses(nets: dict, images: np.ndarray, beta: float) -> dict[str, np.ndarray]:
    """Per-jet reconstruction error, KL term and total loss (float64) of images (n, P, P)."""
    n, p = images.shape[0], images.shape[1]
    reco = np.empty(n, np.float64)
    kl = np.empty(n, np.float64)
    for s in range(0, n, SCORE_BATCH):
        x = np.ascontiguousarray(images[s:s + SCORE_BATCH, :, :, None], np.float32)
        stats = forward(nets["encoder"], x).astype(np.float64)
        latent = stats.shape[1] // 2
        mu, logvar = stats[:, :latent], stats[:, latent:]
        xhat = forward(nets["decoder"], mu.astype(np.float32)).reshape(len(x), p, p).astype(np.float64)
        d = x[:, :, :, 0].astype(np.float64) - xhat
        reco[s:s + len(x)] = np.einsum("ijk,ijk->i", d, d)
        # the C library's exp: numpy's float64 exp rounds differently per SIMD level (docs/numerics.md)
        kl[s:s + len(x)] = -0.5 * np.sum(1.0 + logvar - mu * mu - libm.exp(logvar), axis=1)
    return {"reco": reco, "kl": kl, "loss": reco + beta * kl}


def event_scores(l1: np.ndarray, l2: np.ndarray) -> dict[str, np.ndarray]:
    """The loss-combination strategies of seeds/004 Fig. 4 as event scores (see the module docstring)."""
    l1, l2 = np.asarray(l1, np.float64), np.asarray(l2, np.float64)
    return {"j1": l1, "j2": l2, "sum": l1 + l2, "both": np.minimum(l1, l2), "either": np.maximum(l1, l2)}


def mjj_score_name(strategy: str, efficiency: float) -> str:
    """The event score L − L_T(mjj) of a strategy with its stored mjj-dependent threshold at `efficiency`:
    positive is the selection of seeds/004 Fig. 8, so a scoring pass selects it with the threshold 0."""
    return f"{strategy}_minus_LT_{efficiency * 1e6:g}ppm"


def constituent_columns(jets=(1, 2)) -> list[str]:
    return [f"j{k}_c_{q}" for k in jets for q in ("pt", "deta", "dphi")]


class JetVAEScorer:
    """A trained per-jet VAE loaded for scoring dijet tables (`score_table`), and for the batch scoring pass
    (`score_arrow`, the interface of ``sparkad.model.directory.Scorer``: features, score names, thresholds).

    ``scores``: the names to compute (None: every strategy, plus L − L_T(mjj) for each threshold in
    ``mjj_thresholds``, the content of the model's MJJ_THRESHOLDS read on the driver, which executors
    do not have)."""

    pre = None  # no feature pre-processing: the inputs are the jets' constituents
    #: the stored threshold a scoring pass selects with by default: 1 % of the QCD, as seeds/004
    default_ppm = 10_000.0
    threshold_reference = "its validation sideband events"
    #: the scoring pass's default sizes: ~500 events/s per core, so a task of 10 000 events takes ~20 s (the
    #: cores stay balanced); a batch of 4096 events holds ~70 MB of constituents and images
    batch_rows = 4096
    task_rows = 10_000
    baseline_scores: list = []

    def __init__(self, model_dir: str | Path, files: tuple[bytes, bytes] | None = None, scores=None,
                 mjj_thresholds: dict | None = None):
        self.model_dir = Path(model_dir)
        self.meta, arrays = load_model(self.model_dir, files)
        self.kind = self.meta.get("kind")
        if self.kind != KIND:
            raise SparkadError(f"{self.model_dir}: a {self.meta.get('kind')} model, not a {KIND}")
        self.content_hash = self.meta.get("content_hash")
        if not self.content_hash:
            raise SparkadError(f"{self.model_dir}: model.json has no content hash (not written by sparkad train)")
        self.nets = {k: fold(v) for k, v in unpack(self.meta["networks"], arrays).items()}
        self.image = dict(self.meta["image"])
        self.beta = float(self.meta["config"]["beta"])
        self.thresholds = self.meta["thresholds"]
        self._curves = {}
        if mjj_thresholds:
            self._check_hash(mjj_thresholds, self.model_dir / MJJ_THRESHOLDS)
            from sparkad.analysis.quantile_threshold import QuantileThreshold
            for key, d in sorted(mjj_thresholds.get("thresholds", {}).items()):
                strategy, eff = key.split("@")
                self._curves[mjj_score_name(strategy, float(eff))] = (strategy, QuantileThreshold.from_dict(d))
        self.all_score_names = [HEADLINE, *(s for s in STRATEGIES if s != HEADLINE), *self._curves]
        if scores is None:
            self.score_names = list(self.all_score_names)
        else:
            scores = [scores] if isinstance(scores, str) else list(scores)
            unknown = [s for s in scores if s not in self.all_score_names]
            if unknown or not scores:
                raise SparkadError(f"{self.model_dir}: model has no score(s) {', '.join(map(repr, unknown)) or '(none given)'}"
                                   f" (scores: {', '.join(self.all_score_names)})")
            self.score_names = [s for s in self.all_score_names if s in set(scores)]
        strategies = {self._curves[s][0] if s in self._curves else s for s in self.score_names}
        self._jets = [k for k in (1, 2) if strategies - {"j2" if k == 1 else "j1"}]
        self.features = constituent_columns(self._jets) + (["mjj"] if set(self.score_names) & set(self._curves) else [])

    def images(self, table, jet: int) -> np.ndarray:
        pt, deta, dphi = constituents_of(table, jet)
        return jet_images(pt, deta, dphi, **self.image)[0]

    def score_jets(self, images: np.ndarray) -> dict[str, np.ndarray]:
        return jet_losses(self.nets, images, self.beta)

    def score_table(self, table) -> dict[str, np.ndarray]:
        """Event scores (the strategies) and the per-jet losses L1, L2 of a dijet table."""
        for k in (1, 2):
            if f"j{k}_c_pt" not in (table.column_names if hasattr(table, "column_names") else table.columns):
                raise SparkadError(f"the table has no constituent columns j{k}_c_* (extract with --analysis dijet "
                                   f"from files with constituents)")
        l1 = self.score_jets(self.images(table, 1))["loss"]
        l2 = self.score_jets(self.images(table, 2))["loss"]
        return {**event_scores(l1, l2), "L1": l1, "L2": l2}

    def check_columns(self, columns, source: str = "input") -> None:
        missing = [f for f in self.features if f not in set(columns)]
        if missing:
            raise SparkadError(f"{source}: lacks column(s) {', '.join(missing)} that the jet VAE {self.model_dir} scores "
                               f"(extract with `sparkad extract --analysis dijet` from files with jet constituents)")

    def score_arrow(self, batch) -> dict[str, np.ndarray]:
        """The chosen scores (float64) of a pyarrow batch or table with the dijet columns: the jet images
        are built here, from the constituents, in the worker."""
        self.check_columns(batch.schema.names, "scoring input")
        loss = {k: self.score_jets(self.images(batch, k))["loss"] for k in self._jets}
        zero = np.zeros(batch.num_rows)
        per = event_scores(loss.get(1, zero), loss.get(2, zero))
        out = {}
        for name in self.score_names:
            if name in self._curves:
                strategy, lt = self._curves[name]
                mjj = batch.column(batch.schema.names.index("mjj")).to_numpy(zero_copy_only=False)
                out[name] = per[strategy] - lt(mjj)
            else:
                out[name] = per[name]
        return out

    def histogram_edges(self, name: str) -> np.ndarray:
        """Binning of a score's histograms: its validation range (validation_scores.json); L − L_T(mjj)
        gets the same width, centred on 0."""
        from sparkad.model.directory import validation_edges

        if name in self._curves:
            e = validation_edges(self.model_dir, self._curves[name][0])
            return e - 0.5 * (e[0] + e[-1])
        return validation_edges(self.model_dir, name)

    def stored_threshold(self, strategy: str, efficiency: float) -> dict:
        """The L_T(mjj) stored for (strategy, efficiency) by `store_threshold` (a QuantileThreshold dict)."""
        path = self.model_dir / MJJ_THRESHOLDS
        key = threshold_key(strategy, efficiency)
        try:
            doc = json.loads(path.read_text())
        except FileNotFoundError:
            raise SparkadError(f"{self.model_dir}: no stored mjj thresholds (run `sparkad bumphunt ... "
                               f"--save-threshold` first)") from None
        except (OSError, ValueError) as e:
            raise SparkadError(f"{path}: unreadable ({e})") from None
        self._check_hash(doc, path)
        if key not in doc.get("thresholds", {}):
            raise SparkadError(f"{path}: no threshold {key} (stored: {', '.join(doc.get('thresholds', {})) or 'none'})")
        return doc["thresholds"][key]

    def stored_thresholds(self) -> dict:
        """The model's MJJ_THRESHOLDS content (checked against the model), or {} when it has none."""
        path = self.model_dir / MJJ_THRESHOLDS
        if not path.exists():
            return {}
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise SparkadError(f"{path}: unreadable ({e})") from None
        self._check_hash(doc, path)
        return doc

    def _check_hash(self, doc: dict, path) -> None:
        if doc.get("model_hash") != self.content_hash:
            raise SparkadError(f"{path}: fitted for model {doc.get('model_hash')}, not for this one "
                               f"({self.content_hash}); fit it again with --save-threshold")


def threshold_key(strategy: str, efficiency: float) -> str:
    return f"{strategy}@{efficiency:g}"


def store_threshold(scorer: JetVAEScorer, strategy: str, efficiency: float, threshold: dict) -> Path:
    """Add (or replace) the L_T(mjj) of (strategy, efficiency) in the model directory's MJJ_THRESHOLDS,
    bound to the model's content hash (a retrained model does not inherit it)."""
    from sparkad.core.atomic import write_json_atomic

    path = scorer.model_dir / MJJ_THRESHOLDS
    doc = {"model_hash": scorer.meta["content_hash"], "thresholds": {}}
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError):
            old = {}
        if old.get("model_hash") == doc["model_hash"]:
            doc["thresholds"] = dict(old.get("thresholds", {}))
    doc["thresholds"][threshold_key(strategy, efficiency)] = threshold
    return write_json_atomic(doc, path)

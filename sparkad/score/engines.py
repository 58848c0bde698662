"""Score HLF Parquet with a model on Spark or Dask, and aggregate the analysis products in the same pass.

Where the rows travel: nowhere. The driver plans *fragments* (Parquet files or row-group ranges of
about ``target_rows`` events); each Spark or Dask task reads its fragment with pyarrow inside the
Python worker, scores it with the numpy networks (``score_batch``), writes the scores
(``OUT/scores/dataset=<name>/part-NNNNN.parquet``) and returns only a small mergeable ``Partial``
(histograms, yields, per-run counts). No event crosses the JVM ↔ Python boundary; the partials are
merged on the driver in fragment order, so Spark, Dask and an in-memory loop give bit-identical
aggregates. Everything lands in a staging folder that is renamed when complete, and
``OUT/_score_report.json`` is written last (the completion marker).
"""
from __future__ import annotations

import contextlib
import functools
import json
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from sparkad.analysis.aggregates import AnalysisSpec, Partial, aggregate_batch, merge
from sparkad.core import storage
from sparkad.core.atomic import atomic_path, keep_only
from sparkad.core.errors import SparkadError, task_error
from sparkad.core.jsonsafe import jsonable
from sparkad.core.parquet_io import ID_COLUMNS
from sparkad.model.directory import Scorer, open_scorer, read_model_files, scorer_options
from sparkad.score.batches import (
    get_scorer,
    output_schema,
    score_batch,
    single_threaded_numpy,
)

ENGINES = ("spark", "dask")
SCORE_ID_COLUMNS = tuple(c for c in ID_COLUMNS if c != "dataset")  # the hive folder holds the dataset


def hlf_report(hlf_dir) -> dict:
    """The extraction report of a local HLF folder or an s3:// prefix; refuses one without it."""
    report = storage.join(storage.location(hlf_dir), "_report.json")
    if not storage.is_file(report):
        raise SparkadError(f"{hlf_dir}: no _report.json — not an HLF folder, or its extraction did not complete")
    doc = json.loads(storage.read_bytes(report).decode())
    if not doc.get("complete"):
        raise SparkadError(f"{report}: extraction not marked complete")
    return doc


@dataclass(frozen=True)
class Fragment:
    """A unit of work: whole files or row-group ranges of one dataset, about ``target_rows`` events."""

    index: int
    dataset: str
    parts: tuple  # ((path, (row group, ...)), ...)
    rows: int


def plan_fragments(hlf_dir: Path, datasets, scorer: Scorer, target_rows: int = 2_000_000) -> list[Fragment]:
    """Split each dataset's Parquet files into fragments; checks every file's schema on the way."""
    frags: list[Fragment] = []
    for name in datasets:
        files = storage.list_files(storage.join(storage.location(hlf_dir), name), ".parquet")
        if not files:
            raise SparkadError(f"{storage.join(storage.location(hlf_dir), name)}: dataset folder has no Parquet files")
        parts, rows = [], 0
        for path in files:
            try:
                md = pq.ParquetFile(path).metadata
            except (OSError, pa.ArrowException) as e:
                raise SparkadError(f"{path}: unreadable Parquet file ({e})") from None
            names = md.schema.to_arrow_schema().names
            scorer.check_columns(names, str(path))
            lacking = [c for c in ("dataset", *SCORE_ID_COLUMNS) if c not in names]
            if lacking:
                raise SparkadError(f"{path}: lacks column(s) {', '.join(lacking)} of an HLF file (not written by "
                                   f"`sparkad extract`?)")
            for rg in range(md.num_row_groups):
                n = md.row_group(rg).num_rows
                if parts and parts[-1][0] == str(path):
                    parts[-1] = (str(path), parts[-1][1] + (rg,))
                else:
                    parts.append((str(path), (rg,)))
                rows += n
                if rows >= target_rows:
                    frags.append(Fragment(len(frags), name, tuple(parts), rows))
                    parts, rows = [], 0
        if parts or not any(f.dataset == name for f in frags):  # an empty dataset still gets its empty file
            frags.append(Fragment(len(frags), name, tuple(parts), rows))
    return frags


@dataclass
class ScoreJob:
    """Everything a task needs, shipped once per executor (Spark broadcast / Dask scatter)."""

    model_path: str
    model_files: tuple
    spec: AnalysisSpec | None
    staging: str | None
    batch_rows: int
    scores: tuple | None = None  # the scores to compute (None: all of the model's)
    #: folder of the float64 scores kept for the aggregation pass (one-pass --select-fraction), or None
    side: str | None = None
    #: (score, reference datasets): a reference fragment returns the first round of ``select_threshold``
    tail: tuple | None = None
    #: what the model kind needs beside its files (``sparkad.model.directory.scorer_options``)
    model_options: dict | None = None


def _batches(frag: Fragment, columns, batch_rows: int):
    for path, rgs in frag.parts:
        yield from pq.ParquetFile(path).iter_batches(batch_size=batch_rows, row_groups=list(rgs), columns=columns)


def _columns(scorer: Scorer, spec: AnalysisSpec | None) -> list[str]:
    extra = list(spec.features) + [c.feature for c in spec.cuts] if spec is not None else []
    return list(dict.fromkeys(["dataset", *SCORE_ID_COLUMNS, *scorer.features, *extra]))


def _peak_rss_mb() -> float:
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kB on Linux


def part_path(staging, frag: Fragment):
    """The one scores file of a fragment: every attempt of its task writes it (atomically) to this path
    (a ``Path``, or an object URI when the staging folder is an s3:// prefix)."""
    return storage.join(staging, f"dataset={frag.dataset}", f"part-{frag.index:05d}.parquet")


def drop_attempt_leftovers(staging: Path, frags) -> int:
    """Remove what task attempts that did not finish left in the staging folder (the temporary file of
    a task whose executor was killed: Spark retried the task, and the retry wrote the fragment's file);
    checks that every fragment's file is there. Returns the number of files removed."""
    if storage.is_remote(staging):  # an object appears whole or not at all: nothing to clean, only to check
        present = set(storage.list_tree(staging))
        missing = sorted(p for p in (part_path(staging, f) for f in frags) if p not in present)
        if missing:
            raise SparkadError(f"{staging}: {len(missing)} fragment file(s) missing after the pass, e.g. {missing[0]}")
        return 0
    return keep_only(staging, [part_path(staging, f) for f in frags], "fragment file")


def side_path(side, frag: Fragment):
    """The float64 scores of a fragment kept for the aggregation pass (raw, events × scores, row-major)."""
    return storage.join(side, f"part-{frag.index:05d}.f64")


def run_fragment(frag: Fragment, job: ScoreJob) -> tuple:
    """Read → score → write scores → aggregate, for one fragment, inside one Python worker. Returns
    (events, partial aggregates, peak RSS in MB, events with a NaN score, first selection round or
    None). With ``job.side`` the fragment's float64 scores are kept for ``select_round`` and
    ``aggregate_fragment`` instead of being aggregated here (the threshold is not known yet); with
    ``job.tail`` a reference fragment returns the first round of ``select_threshold``."""
    single_threaded_numpy()
    scorer = get_scorer(job.model_path, job.model_files, job.scores, job.model_options)  # once per worker process
    if storage.is_remote(job.staging):  # written locally, then uploaded as one object each
        import tempfile
        with tempfile.TemporaryDirectory(prefix="sparkad-part-") as tmpdir:
            local, local_side = Path(tmpdir) / "part.parquet", Path(tmpdir) / "side.f64"
            res = _score_fragment(frag, job, scorer, local, local_side if job.side else None)
            storage.upload_file(local, part_path(job.staging, frag))
            if job.side:
                storage.upload_file(local_side, side_path(job.side, frag))
        return res
    dst = part_path(Path(job.staging), frag)
    dst.parent.mkdir(parents=True, exist_ok=True)
    side = None
    if job.side:
        side = Path(side_path(job.side, frag))
        side.parent.mkdir(parents=True, exist_ok=True)
    return _score_fragment(frag, job, scorer, dst, side)


def _score_fragment(frag: Fragment, job: ScoreJob, scorer, dst: Path, side: Path | None) -> tuple:
    writer, n, partial, nan = None, 0, None, 0
    tail = job.tail if job.tail is not None and frag.dataset in job.tail[1] else None
    tail_s, tail_w = [], []  # the selection score and weight of a reference fragment's events
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(atomic_path(dst))
        side_file = stack.enter_context(open(stack.enter_context(atomic_path(side)), "wb")) if side else None
        try:
            for b in _batches(frag, _columns(scorer, job.spec), job.batch_rows):
                sb, scores = score_batch(b, scorer)
                out = sb.drop_columns(["dataset"])  # the hive folder holds it
                if writer is None:
                    writer = pq.ParquetWriter(tmp, out.schema, compression="zstd", compression_level=1)
                writer.write_batch(out)
                n += b.num_rows
                # NaN/inf features (e.g. filled by `extract --missing nan`) give NaN scores: never above a threshold
                nan += int(np.isnan(scores[scorer.score_names[0]]).sum())
                if side_file is not None:
                    side_file.write(np.column_stack([np.asarray(scores[s], "<f8") for s in scorer.score_names]).tobytes())
                if tail is not None:
                    tail_s.append(np.asarray(scores[tail[0]], np.float64))  # float64: the products compare these
                    tail_w.append(b.column("weight").to_numpy())
                if job.spec is not None:
                    p = _aggregate(b, frag.dataset, scores, job.spec)
                    partial = p if partial is None else partial.add(p)
            if writer is None:  # an empty fragment still gets its (empty) file: the dataset exists
                writer = pq.ParquetWriter(tmp, output_schema(scorer).remove(0), compression="zstd")
            writer.close()
            writer = None
        finally:
            if writer is not None:
                writer.close()
    top = None
    if tail is not None:  # the first round of the exact selection (``select_threshold``)
        top = digit_histogram(np.concatenate(tail_s) if tail_s else np.zeros(0),
                              np.concatenate(tail_w) if tail_w else np.zeros(0), 0, 0)
    return n, partial, _peak_rss_mb(), nan, top


def _aggregate(b: pa.RecordBatch, dataset: str, scores: dict, spec: AnalysisSpec) -> Partial:
    cols = {c: b.column(c).to_numpy(zero_copy_only=False) for c in spec.features}
    for c in spec.cuts:
        cols.setdefault(c.feature, b.column(c.feature).to_numpy(zero_copy_only=False))
    return aggregate_batch(cols, dataset, b.column("weight").to_numpy(), b.column("run").to_numpy(),
                           b.column("luminosityBlock").to_numpy(), scores, spec)


def read_side(side_dir, frag: Fragment, names) -> np.ndarray:
    """The float64 scores (events × names) the scoring pass kept for a fragment."""
    where = side_path(side_dir, frag)
    if storage.is_remote(where):
        side = np.frombuffer(storage.read_bytes(where), "<f8")
    else:
        side = np.memmap(where, "<f8", mode="r") if Path(where).stat().st_size else np.zeros(0)
    side = side.reshape(-1, len(names))
    if len(side) != frag.rows:
        raise SparkadError(f"{where}: holds the scores of {len(side)} events, the fragment has {frag.rows}")
    return side


def aggregate_fragment(frag: Fragment, job: ScoreJob) -> Partial | None:
    """The aggregation pass of a one-pass --select-fraction run: the fragment's HLF columns that the
    products need, in the batches of the scoring pass, with the float64 scores that pass kept — the
    same partial aggregates, bit for bit, as aggregating in the scoring pass, without a second pass
    through the networks."""
    names = list(job.scores)
    side = read_side(job.side, frag, names)
    columns = list(dict.fromkeys(["weight", "run", "luminosityBlock", *job.spec.features,
                                  *(c.feature for c in job.spec.cuts)]))
    partial, start = None, 0
    for b in _batches(frag, columns, job.batch_rows):
        rows = slice(start, start + b.num_rows)
        start += b.num_rows
        p = _aggregate(b, frag.dataset, {s: side[rows, i] for i, s in enumerate(names)}, job.spec)
        partial = p if partial is None else partial.add(p)
    return partial


# ------------------------------------------------ the exact threshold of --select-fraction, distributed
# A radix selection over the float64 selection score: each round, every reference fragment returns the
# weights and counts of its events per 16-bit digit of an order-preserving 64-bit key, among the events
# whose higher digits equal the prefix chosen so far; the driver walks the merged digits from the top to
# the one where the cumulative weight first exceeds the target; once that digit holds few events, they
# are collected and the threshold is found among them exactly as ``exact_threshold`` does on all events.
# What crosses the network is bounded (≤ 65 536 bins per fragment and round, then one bin's events),
# whatever the fraction and the sample size (the earlier tails grew as fraction × sample per fragment).
DIGIT_BITS = 16
COLLECT_MAX = 1_000_000  # events of the crossing bin collected on the driver


def order_keys(scores: np.ndarray) -> np.ndarray:
    """float64 → uint64 in the same order (−0.0 as +0.0; NaN must be removed by the caller)."""
    b = (np.asarray(scores, np.float64) + 0.0).view(np.uint64)
    return np.where((b >> np.uint64(63)).astype(bool), ~b, b | np.uint64(1 << 63))


def _in_bin(scores, weights, depth: int, prefix: int):
    """(keys, scores, weights) of the non-NaN events whose key's first ``depth`` digits equal ``prefix``."""
    scores, weights = np.asarray(scores, np.float64), np.asarray(weights, np.float64)
    ok = ~np.isnan(scores)  # NaN scores are never selected
    keys, scores, weights = order_keys(scores[ok]), scores[ok], weights[ok]
    if depth:
        mine = (keys >> np.uint64(64 - DIGIT_BITS * depth)) == np.uint64(prefix)
        keys, scores, weights = keys[mine], scores[mine], weights[mine]
    return keys, scores, weights


def digit_histogram(scores, weights, depth: int, prefix: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(digits, Σw, events) of the events whose key's first ``depth`` digits equal ``prefix``, per next
    digit, digits ascending; NaN scores (never selected) left out."""
    keys, _, w = _in_bin(scores, weights, depth, prefix)
    d = ((keys >> np.uint64(64 - DIGIT_BITS * (depth + 1))) & np.uint64((1 << DIGIT_BITS) - 1)).astype(np.int64)
    digits, inv = np.unique(d, return_inverse=True)
    return digits, np.bincount(inv, weights=w, minlength=len(digits)), np.bincount(inv, minlength=len(digits))


def bin_members(scores, weights, depth: int, prefix: int) -> tuple[np.ndarray, np.ndarray]:
    """The (score, weight) of the events whose key's first ``depth`` digits equal ``prefix``."""
    _, s, w = _in_bin(scores, weights, depth, prefix)
    return s, w


@dataclass
class SelectRound:
    """One round of the distributed selection, shipped to the reference fragments' tasks."""

    side: str
    scores: tuple
    score: str
    batch_rows: int
    depth: int
    prefix: int
    collect: bool


def select_round(frag: Fragment, job: SelectRound):
    """A reference fragment's part of one round, from the scores its scoring task kept."""
    s = read_side(job.side, frag, job.scores)[:, list(job.scores).index(job.score)]
    w = np.concatenate([b.column("weight").to_numpy() for b in _batches(frag, ["weight"], job.batch_rows)] or
                       [np.zeros(0)])
    if job.collect:
        return bin_members(s, w, job.depth, job.prefix)
    return digit_histogram(s, w, job.depth, job.prefix)


def select_threshold(first, next_round, fraction: float, total_weight: float) -> dict:
    """The exact threshold (as ``exact_threshold`` on all events) from the first round's histograms
    ``first`` and ``next_round(depth, prefix, collect)``, which returns every reference fragment's
    histograms (collect=False) or bin members (collect=True) for that round."""
    target = fraction * total_weight
    above_w, above_n, prefix, depth, hists = 0.0, 0, 0, 0, first
    while True:
        digits = np.concatenate([h[0] for h in hists]) if hists else np.zeros(0, np.int64)
        uniq, inv = np.unique(digits, return_inverse=True)
        w = np.bincount(inv, weights=np.concatenate([h[1] for h in hists]) if hists else None, minlength=len(uniq))
        n = np.bincount(inv, weights=np.concatenate([h[2] for h in hists]) if hists else None, minlength=len(uniq))
        cw = above_w + np.cumsum(w[::-1])  # from the highest digit down
        i = int(np.searchsorted(cw, target, side="right"))
        if i >= len(uniq):
            raise SparkadError(f"--select-fraction {fraction:g} keeps the whole reference sample: nothing to cut on")
        j = len(uniq) - 1 - i  # the crossing digit
        above_w = float(cw[i] - w[j])
        above_n += int(n[j + 1:].sum())
        prefix, depth = (prefix << DIGIT_BITS) | int(uniq[j]), depth + 1
        if n[j] <= COLLECT_MAX or depth * DIGIT_BITS == 64:
            members = next_round(depth, prefix, True)
            bs = np.concatenate([m[0] for m in members])
            bw = np.concatenate([m[1] for m in members])
            s_top, w_top = cut_top(bs, bw, target - above_w)
            t = float(s_top[-1])
            passing = bs > t
            return {"threshold": t, "selected_weight": above_w + float(bw[passing].sum()),
                    "selected_events": above_n + int(passing.sum()), "target_weight": target,
                    "selection_rounds": depth + 1}
        hists = next_round(depth, prefix, False)


def cut_top(scores: np.ndarray, weights: np.ndarray, target_weight: float) -> tuple[np.ndarray, np.ndarray]:
    order = np.lexsort((np.arange(len(scores)), -scores.astype(np.float64)))
    s, w = scores[order], weights[order]
    c = np.cumsum(w)
    stop = int(np.searchsorted(c, target_weight, side="right")) + 1  # include the crossing event
    return s[:stop], w[:stop]


def exact_threshold(scores: np.ndarray, weights: np.ndarray, fraction: float, total_weight: float) -> dict:
    """The score value t such that events with score > t hold at most ``fraction`` of the total
    weight, with the largest such selection: t is the score of the event at which the cumulative
    weight, in decreasing score order, first exceeds fraction × total. For unit weights this is the
    (k+1)-th largest score with k = floor(fraction·N) — exact, no approximate percentile."""
    target = fraction * total_weight
    s, w = cut_top(np.asarray(scores), np.asarray(weights, np.float64), target)
    if len(s) == 0 or np.sum(w) <= target:
        raise SparkadError(f"--select-fraction {fraction:g} keeps the whole reference sample: nothing to cut on")
    t = float(s[-1])
    passing = s > t
    return {"threshold": t, "selected_weight": float(w[passing].sum()), "selected_events": int(passing.sum()),
            "target_weight": target}


# -------------------------------------------------------------------- engines (thin drivers)

def _map_spark(spark, fn, frags, job):
    from sparkad.core.spark import map_tasks

    return map_tasks(spark, fn, frags, job)  # DataFrame API: classic and Spark Connect sessions alike


def _map_dask(client, fn, frags, job):
    [fjob] = client.scatter([job], broadcast=True)
    return client.gather(client.map(fn, frags, job=fjob, pure=False))


class Engine:
    """Runs a function over fragments on Spark or Dask, results in fragment order."""

    def __init__(self, name: str, master: str | None = None, spark=None, workers: int = 2,
                 scheduler: str | None = None):
        if name not in ENGINES:
            raise SparkadError(f"unknown engine {name!r} (choose from {', '.join(ENGINES)})")
        self.name, self.master, self.spark, self.workers, self.scheduler = name, master, spark, workers, scheduler
        self._client = self._cluster = None

    def __enter__(self):
        if self.name == "spark":
            if self.spark is None:
                from sparkad.core.spark import get_session
                self.spark = get_session("sparkad-score", self.master)
        else:
            from distributed import Client, LocalCluster
            if not self.scheduler:
                self._cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1, processes=True,
                                             dashboard_address=None, silence_logs=40)
            self._client = Client(self.scheduler or self._cluster)
        return self

    def __exit__(self, *exc):
        if self._client is not None:
            self._client.close()
        if self._cluster is not None:
            self._cluster.close()

    @property
    def cores(self) -> int | None:
        if self.name == "spark":
            from sparkad.core.spark import session_cores
            return session_cores(self.spark)
        return sum(self._client.nthreads().values())

    def map(self, fn, frags, job):
        if not frags:
            return []
        if self.name == "spark":
            return _map_spark(self.spark, fn, frags, job)
        return _map_dask(self._client, fn, frags, job)


# -------------------------------------------------------------------- the job

def check_batch_sizes(batch_rows, target_rows) -> None:
    """Checked on the driver: a bad size would otherwise fail in every task, after the session started."""
    for name, v in (("--batch-rows", batch_rows), ("target rows per fragment", target_rows)):
        if v is None:  # the model's own size (``Scorer.batch_rows`` / ``task_rows``)
            continue
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise SparkadError(f"{name} must be a positive integer, got {v!r}")


def _tasks(engine, fn, frags, job, hlf_dir):
    """engine.map, with a failed task reported as one line (its own error) instead of the engine's
    traceback of a traceback."""
    try:
        return engine.map(fn, frags, job)
    except KeyboardInterrupt:
        raise
    except SparkadError:
        raise
    except Exception as e:  # noqa: BLE001 - any task failure becomes one line
        msg = task_error(e)
        if msg.startswith((str(hlf_dir), "/")):
            raise SparkadError(msg) from None
        raise SparkadError(f"{hlf_dir}: a scoring task failed ({msg})") from None


def score_folder(hlf_dir, model_dir, out, *, engine: Engine, spec_builder=None, anomaly=None,
                 batch_rows: int | None = None, target_rows: int | None = None, scores=None, model_options=None,
                 log=lambda m: None) -> dict:
    """Score every dataset of an HLF folder; with ``spec_builder`` also aggregate the analysis products.
    ``scores``: the scores computed and stored (None: all of the model's). Any model kind
    (``open_scorer``); ``model_options``: its ``scorer_options`` (read here when not given).

    ``anomaly`` (from ``resolve_anomaly_threshold``) says how the anomaly threshold is found. When it is
    a fraction of a reference sample the networks still run once: the scoring pass keeps every
    fragment's float64 scores beside the output and returns the first round of the distributed exact
    selection (``select_threshold``: a few more rounds over the kept scores); an aggregation pass (HLF
    columns + kept scores, no network) builds the products with the threshold; the kept scores are
    removed.
    """
    t0 = time.time()
    from sparkad.model.store import local_model_dir, model_text

    # an s3:// model: copied once to the driver's cache; its files are shipped to the tasks as for a local one
    model_name, model_dir = model_text(model_dir), local_model_dir(model_dir)
    check_batch_sizes(batch_rows, target_rows)
    # absolute: executors run in their own working folders (a standalone worker's work/app-*/N/)
    hlf_dir, out, model_dir = storage.absolute(hlf_dir), storage.absolute(out), Path(model_dir).absolute()
    report = hlf_report(hlf_dir)
    datasets = report["datasets"]
    files = read_model_files(model_dir)
    model_options = scorer_options(model_dir) if model_options is None else model_options
    scorer = open_scorer(model_dir, files=files, scores=scores, options=model_options)
    scores = tuple(scorer.score_names)
    # the model's sizes unless given: events per Arrow batch (bounds a task's memory) and per task
    batch_rows, target_rows = batch_rows or scorer.batch_rows, target_rows or scorer.task_rows
    t = time.time()
    frags = plan_fragments(hlf_dir, datasets, scorer, target_rows)
    timings = {"plan_s": round(time.time() - t, 3)}
    sel = dict(anomaly or {})
    one_pass = sel.get("fraction") is not None  # the threshold comes out of the scoring pass
    tail = total_w = None
    if one_pass:
        total_w = sum(float(datasets[d].get("sumw_written", datasets[d]["written"])) if not datasets[d].get("is_data")
                      else float(datasets[d]["written"]) for d in sel["reference_datasets"])
        tail = (sel["score"], tuple(sel["reference_datasets"]))
    spec = spec_builder(scorer, sel) if spec_builder is not None and not one_pass else None

    if storage.is_remote(out):
        # no rename on an object store: the marker goes first, a fixed staging prefix (a killed run's
        # leftovers are removed by its re-run) is copied into place, the marker is written last (finish)
        storage.check_bucket(out)
        storage.remove_file(storage.join(out, "_score_report.json"))
        staging = storage.join(out, "_staging", "scores")
        side = storage.join(out, "_staging", "side")
        storage.remove_tree(storage.join(out, "_staging"))
    else:
        out.mkdir(parents=True, exist_ok=True)
        (out / "_score_report.json").unlink(missing_ok=True)
        for stale in [*out.glob(".scores-*"), *out.glob(".side-*")]:  # what a killed run left (this is its re-run)
            shutil.rmtree(stale, ignore_errors=True)
        run_id = uuid.uuid4().hex
        staging, side = out / f".scores-{run_id}", out / f".side-{run_id}"
    try:
        t = time.time()
        job = ScoreJob(str(model_dir), files, spec, str(staging), batch_rows, scores,
                       side=str(side) if one_pass else None, tail=tail, model_options=model_options)
        results = _tasks(engine, run_fragment, frags, job, hlf_dir)
        timings["score_pass_s"] = round(time.time() - t, 3)
        counts: dict = {name: 0 for name in datasets}
        nan_scores: dict = {name: 0 for name in datasets}
        for f, r in zip(frags, results):
            counts[f.dataset] += r[0]
            nan_scores[f.dataset] += r[3]
        peak_rss = max((r[2] for r in results), default=0.0)
        for name in datasets:
            if counts[name] != datasets[name]["written"]:
                raise SparkadError(f"{storage.join(hlf_dir, name)}: scored {counts[name]} events but the HLF report lists "
                                   f"{datasets[name]['written']} — files changed since extraction?")
        t = time.time()
        partial = functools.reduce(merge, [r[1] for r in results], None) if spec is not None else None
        merge_s = time.time() - t
        if one_pass:
            t = time.time()
            ref = [f for f in frags if f.dataset in tail[1]]

            def next_round(depth, prefix, collect):
                rjob = SelectRound(str(side), scores, sel["score"], batch_rows, depth, prefix, collect)
                return _tasks(engine, select_round, ref, rjob, hlf_dir)

            sel.update(select_threshold([r[4] for r in results if r[4] is not None], next_round, sel["fraction"],
                                        total_w))
            sel["reference_total_weight"] = total_w
            log(f"threshold {sel['score']} > {sel['threshold']:.6g}: {sel['fraction']:g} of "
                f"{', '.join(sel['reference_datasets'])} ({sel['selected_events']} events)")
            if spec_builder is not None:
                spec = spec_builder(scorer, sel)
                agg_job = ScoreJob(str(model_dir), files, spec, str(staging), batch_rows, scores, side=str(side))
                partials = _tasks(engine, aggregate_fragment, frags, agg_job, hlf_dir)
                t_merge = time.time()
                partial = functools.reduce(merge, partials, None)
                merge_s = time.time() - t_merge
            timings["aggregate_pass_s"] = round(time.time() - t - merge_s, 3)
        if spec is not None:
            timings["merge_s"] = round(merge_s, 3)
        for name, k in nan_scores.items():
            if k:
                log(f"warning: {storage.join(hlf_dir, name)}: {k} event(s) have non-finite features and a NaN score, which "
                    f"never passes a threshold (counted in _score_report.json: nan_scores)")
        leftovers = drop_attempt_leftovers(staging, frags)
        if leftovers:
            log(f"removed {leftovers} temporary file(s) of task attempts that did not finish (retried)")
        storage.publish_tree(staging, storage.join(out, "scores"))
    finally:
        if storage.is_remote(staging):
            storage.remove_tree(storage.join(out, "_staging"))
        else:
            for d in (staging, side):
                if d.exists():
                    shutil.rmtree(d, ignore_errors=True)
    doc = {"complete": True, "engine": engine.name, "cores": engine.cores, "model": model_name,
           "model_hash": scorer.content_hash, "model_kind": scorer.kind, "scores": scorer.score_names,
           "model_scores": scorer.all_score_names,
           "thresholds": scorer.thresholds, "anomaly_threshold": jsonable(sel) if sel else None,
           "hlf": storage.resolved_text(hlf_dir), "hlf_feature_set": report.get("feature_set"),
           "datasets": {n: {"is_data": bool(d.get("is_data")), "label": d.get("label"),
                            "sumw": d.get("sumw_written")} for n, d in datasets.items()},
           "events": counts, "total_events": sum(counts.values()), "nan_scores": nan_scores, "fragments": len(frags),
           "batch_rows": batch_rows, "target_rows": target_rows, "timings": timings,
           "worker_peak_rss_mb": round(peak_rss, 1)}
    return {"report": doc, "partial": partial, "spec": spec, "scorer": scorer, "t0": t0}


def finish(out: Path, result: dict, extra: dict | None = None) -> dict:
    """Write the completion marker (after any products): the report, with the total elapsed time."""
    doc = dict(result["report"], **(extra or {}))
    doc["elapsed_s"] = round(time.time() - result["t0"], 3)
    storage.write_json(doc, storage.join(storage.location(out), "_score_report.json"))  # last: the marker
    return doc


def score_with_spark(hlf_dir, model_dir, out, master=None, batch_rows: int | None = None, spark=None, **kw) -> dict:
    """Scores only (no products), on Spark; returns the report."""
    with Engine("spark", master=master, spark=spark) as eng:
        res = score_folder(hlf_dir, model_dir, out, engine=eng, batch_rows=batch_rows, **kw)
    return finish(out, res)


def score_with_dask(hlf_dir, model_dir, out, workers: int = 2, scheduler: str | None = None,
                    batch_rows: int | None = None, **kw) -> dict:
    """Scores only (no products), on Dask (a LocalCluster unless a scheduler is given)."""
    with Engine("dask", workers=workers, scheduler=scheduler) as eng:
        res = score_folder(hlf_dir, model_dir, out, engine=eng, batch_rows=batch_rows, **kw)
    return finish(out, res)


def sparkad_score_udf(model_dir, score: str | None = None, batch_size: int = 100_000):
    """A Spark UDF for users' own queries (``predict_batch_udf``): call it on the model's feature columns,
    in ``Scorer(model_dir).features`` order. With ``score`` it returns that score (float), else a struct
    of all of the model's scores. Same numbers as the batch job (same kernel)."""
    from pyspark.ml.functions import predict_batch_udf
    from pyspark.sql import functions as F
    from pyspark.sql.types import FloatType, StructField, StructType

    from sparkad.model.store import local_model_dir

    model_dir = local_model_dir(model_dir)  # an s3:// model: its cached copy (the UDF ships the files)
    files = read_model_files(model_dir)
    scorer = Scorer(model_dir, files=files, scores=None if score is None else [score])  # refuses an unknown score
    names, n_features = scorer.score_names, len(scorer.features)
    model_path = str(model_dir)

    def make_predict_fn():
        single_threaded_numpy()
        s = get_scorer(model_path, files, names)  # only what the returned scores need

        def predict(x):
            sc = s.score(np.asarray(x, np.float64).reshape(-1, n_features))
            return sc[score] if score is not None else {k: sc[k] for k in names}

        return predict

    rtype = FloatType() if score is not None else StructType([StructField(n, FloatType()) for n in names])
    base = predict_batch_udf(make_predict_fn, return_type=rtype, batch_size=batch_size,
                             input_tensor_shapes=[[n_features]])

    def udf(*cols):
        """Columns (names or Column objects) of the model's features, in its order."""
        if len(cols) != n_features:
            raise SparkadError(f"{model_dir}: the UDF takes the model's {n_features} feature columns "
                               f"({', '.join(scorer.features)}), got {len(cols)}")
        # doubles: a float32 feature converts exactly, so the UDF sees the batch job's numbers
        return base(F.array(*[(F.col(c) if isinstance(c, str) else c).cast("double") for c in cols]))

    udf.features = list(scorer.features)
    return udf

"""Extraction driver: fileset → pre-flight checks → coffea Runner (Iterative, Futures or Dask) →
HLF Parquet per dataset, ``_cutflow.json`` and ``_report.json``.

The driver only moves work around; the physics is in ``sparkad.extract.processor`` and below.
Outputs are staged in ``OUT/_staging`` and moved into place at the end; ``_report.json`` is
written last, so its presence marks a complete extraction.
"""
from __future__ import annotations

import contextlib
import io
import re
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import uproot

from sparkad.core.config import given, load_conf, merge_config, name_problem
from sparkad.core.errors import ConfigError, FeatureUnavailableError, InputFileError, SparkadError
from sparkad.extract.fileset import Fileset, FileCheck, check_unique_files, dataset_weighting, inspect_file
from sparkad.extract.formats import NEEDED_INPUTS
from sparkad.extract.hlf import KNOWN_FEATURES, missing_capabilities
from sparkad.core.parquet_io import hlf_table, write_atomic
from sparkad.core import storage
from sparkad.core.atomic import keep_only
from sparkad.extract.selection import Selection, load_selection
from sparkad.core.version import code_version

EXECUTORS = ("iterative", "futures", "dask")


def known_features(analysis: str = "single_lepton") -> tuple[str, ...]:
    from sparkad.extract import dijet

    return dijet.KNOWN_FEATURES if analysis == "dijet" else KNOWN_FEATURES


def resolve_features(spec, analysis: str = "single_lepton") -> tuple[str, list[str]]:
    """A named set of conf/features.yaml, or a list / comma-separated string of feature names (of the
    analysis: the single-lepton HLF or the dijet ones)."""
    sets = load_conf("features")
    known = known_features(analysis)
    if isinstance(spec, str) and spec in sets:
        names = list(sets[spec])
        wrong = [n for n in names if n not in known]
        if wrong:
            raise ConfigError(f"feature set {spec} does not belong to the {analysis} analysis ({', '.join(wrong[:4])} "
                              f"are not among its features); use --analysis to match it")
        return spec, names
    names = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else list(spec)
    names = [n for n in names if n]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise ConfigError(f"unknown feature set or feature(s) {', '.join(unknown) or repr(spec)} of the {analysis} "
                          f"analysis (sets: {', '.join(sets)}; features: {', '.join(known)})")
    return "custom", names


@dataclass
class ExtractOptions:
    out: Path | str  # a local folder, or an s3:// prefix (sparkad.core.storage)
    analysis: str = "single_lepton"  # or "dijet" (sparkad.extract.dijet)
    feature_set: str | list = "cms2012"
    selection: str = "single_lepton"
    on_missing: str = "refuse"
    chunksize: int = 500_000
    executor: str = "iterative"
    workers: int = 2
    scheduler: str | None = None
    skip_bad_files: bool = False
    progress: bool = True
    extra_metadata: dict = field(default_factory=dict)

    @classmethod
    def from_conf(cls, out, **overrides) -> "ExtractOptions":
        conf = load_conf("extract")
        keys = {"analysis", "feature_set", "selection", "on_missing", "chunksize", "executor", "workers"}
        defaults = {k: conf[k] for k in keys if k in conf}
        analysis = overrides.get("analysis") or defaults.get("analysis", "single_lepton")
        if analysis != "single_lepton":  # that analysis's own default feature set and selection
            defaults.update(analysis=analysis, **(conf.get(analysis) or {}))
        base = merge_config(defaults, given(overrides))
        opts = cls(out=storage.location(out), **base)
        opts.validate()
        return opts

    def validate(self):
        from sparkad.extract.selection import ANALYSES

        if self.analysis not in ANALYSES:
            raise ConfigError(f"analysis must be one of {', '.join(ANALYSES)}, got {self.analysis!r}")
        if self.on_missing not in ("refuse", "nan"):
            raise ConfigError(f"on_missing must be 'refuse' or 'nan', got {self.on_missing!r}")
        if self.executor not in EXECUTORS:
            raise ConfigError(f"executor must be one of {', '.join(EXECUTORS)}, got {self.executor!r}")
        if not isinstance(self.chunksize, int) or self.chunksize <= 0:
            raise ConfigError(f"chunksize must be a positive integer, got {self.chunksize!r}")
        if not isinstance(self.workers, int) or self.workers <= 0:
            raise ConfigError(f"workers must be a positive integer, got {self.workers!r}")


def _make_executor(opts: ExtractOptions, closers: list):
    from coffea import processor

    if opts.executor == "iterative":
        return processor.IterativeExecutor(status=opts.progress, desc="extract", unit="chunk")
    if opts.executor == "futures":
        return processor.FuturesExecutor(workers=opts.workers, status=opts.progress, desc="extract", unit="chunk")
    from distributed import Client, LocalCluster

    if opts.scheduler:
        client = Client(opts.scheduler)
    else:
        cluster = LocalCluster(n_workers=opts.workers, threads_per_worker=1, processes=True,
                               dashboard_address=None, silence_logs=40)
        closers.append(cluster.close)
        client = Client(cluster)
    closers.insert(0, client.close)
    return processor.DaskExecutor(client=client, status=opts.progress, desc="extract", unit="chunk")


def _failing_file(exc: BaseException) -> str | None:
    for e in _chain(exc):
        m = re.search(r"filename='([^']+)'", str(e))
        if m:
            return m.group(1)
    return None


def _chain(exc):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _root_cause(exc: BaseException) -> str:
    last = list(_chain(exc))[-1]
    text = str(last).strip().splitlines()[0] if str(last).strip() else ""
    return f"{type(last).__name__}: {text[:200]}"


def _uproot_options(fileset: dict) -> dict:
    """Local files are read through memory maps: NanoEvents fetch one branch at a time, and uproot's
    default fsspec source hands every fetch to its I/O thread and waits (~7 % of the extraction time
    at 1 M events); URLs (root://, https://, file://: MemmapSource takes plain paths only) keep
    uproot's defaults."""
    paths = [p for d in fileset.values() for p in d["files"]]
    if paths and all("://" not in str(p) for p in paths):
        return {"handler": uproot.MemmapSource}
    return {}


def _check_golden_json(dataset: str, path: str) -> None:
    """The certified-lumi JSON is read by every worker: a missing or malformed one is reported here,
    naming it, rather than by the first ROOT file that happens to be processed."""
    import json

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"dataset {dataset}: golden JSON {path} not found")
    try:
        doc = json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: not a readable golden JSON ({type(e).__name__}: {e})") from None
    ok = isinstance(doc, dict) and all(
        isinstance(ranges, list) and all(isinstance(r, list) and len(r) == 2 and all(isinstance(x, int) for x in r)
                                         for r in ranges) for ranges in doc.values())
    if not ok or not all(str(k).isdigit() for k in (doc if isinstance(doc, dict) else ())):
        raise ConfigError(f"{path}: not a golden JSON (expected {{\"RUN\": [[first_ls, last_ls], ...], ...}})")


def drop_attempt_leftovers(staging, written) -> int:
    """Remove from a local staging folder every file that no finished chunk reported (``written``: the
    ``dataset/chunk.parquet`` names of the accumulator): the hidden temporary file of a chunk whose Dask
    worker was killed in mid-write (the scheduler redid the chunk elsewhere, under the same final name).
    Left there, it would be published and listed as a ``*.parquet`` of the dataset. Checks that every
    reported chunk file is there. Returns the number of files removed. An object store needs none of
    it: a chunk's object appears whole or not at all."""
    if storage.is_remote(staging):
        return 0
    return keep_only(staging, [Path(staging) / rel for rel in written], "chunk file")


def run_extraction(fileset: Fileset, opts: ExtractOptions, log: Callable[[str], None] = print) -> dict:
    """Run the whole extraction and return the report (also written to OUT/_report.json)."""
    from coffea import processor
    from coffea.nanoevents import DelphesSchema, NanoAODSchema
    from sparkad.extract import dijet
    from sparkad.extract.processor import DijetProcessor, HLFProcessor

    t0 = time.time()
    opts.validate()
    set_name, features = resolve_features(opts.feature_set, opts.analysis)
    selection: Selection = load_selection(opts.selection)
    if selection.analysis != opts.analysis:
        raise ConfigError(f"selection {selection.name} belongs to the {selection.analysis} analysis, not to "
                          f"{opts.analysis}; choose a {opts.analysis} selection (or --analysis {selection.analysis})")
    is_dijet = opts.analysis == "dijet"
    btag_conf = load_conf("extract")["btag"]
    for name in fileset.datasets:  # each becomes OUT/<name>/: `..` or `a/b` would write outside OUT
        problem = name_problem(name)
        if problem:
            raise ConfigError(f"dataset name {problem}; choose another (--dataset NAME)")
    check_unique_files(fileset.datasets, fileset.source)

    # 1. pre-flight: every file opened and checked; bad ones stop the run or are skipped and listed
    good: dict[str, list[FileCheck]] = {name: [] for name in fileset.datasets}
    skipped = []
    for ds in fileset.datasets.values():
        for path in ds.files:
            try:
                good[ds.name].append(inspect_file(ds, path, btag_conf, opts.analysis))
            except InputFileError as e:
                if not opts.skip_bad_files:
                    raise SparkadError(f"{e} (use --skip-bad-files to skip and report bad files)") from None
                skipped.append({"dataset": ds.name, "file": e.path, "reason": e.reason, "entries": e.entries})
                log(f"skipping {e.path}: {e.reason}")

    # 2. features each file can provide: refuse, or NaN recorded per file
    nan_features, notes = {}, []
    for checks in good.values():
        for c in checks:
            lack = missing_capabilities(features, c.info.capabilities, dijet.FEATURE_REQUIRES if is_dijet else None)
            if not lack:
                continue
            caps = sorted({cap for caps in lack.values() for cap in caps})
            needs = "; ".join(f"{cap}: {(dijet.NEEDED_INPUTS if is_dijet else NEEDED_INPUTS)[cap]}" for cap in caps)
            if opts.on_missing == "refuse":
                raise FeatureUnavailableError(
                    f"{c.path}: format {c.info.name} cannot provide {', '.join(lack)} of feature set {set_name} "
                    f"(needs {needs}); use a feature set it supports (e.g. {'a list without them' if is_dijet else 'cms2012'}) "
                    f"or --missing nan")
            nan_features[c.path] = sorted(lack)
            notes.append({"file": c.path, "format": c.info.name, "nan_features": sorted(lack), "missing_inputs": caps})
    if notes:
        log(f"note: {len(notes)} file(s) lack inputs for {', '.join(sorted({f for n in notes for f in n['nan_features']}))}: "
            f"filled with NaN (recorded in _report.json and the Parquet metadata)")

    # 3. per-dataset weights
    datasets = {}
    for ds in fileset.datasets.values():
        datasets[ds.name] = {"label": ds.label, "is_data": ds.is_data, "golden_json": ds.golden_json,
                             "weighting": dataset_weighting(ds, good[ds.name], fileset.luminosity)}
        if ds.golden_json:
            _check_golden_json(ds.name, ds.golden_json)

    # nothing is written before the checks passed
    out = storage.location(opts.out)
    if storage.is_remote(out):
        # no rename on an object store: the marker goes first, the staged objects are copied into
        # place, the marker is written last; a killed run leaves no marker, its re-run starts over
        storage.check_bucket(out)
        for stale in ("_report.json", "_cutflow.json"):
            storage.remove_file(storage.join(out, stale))
        staging = storage.join(out, "_staging")
        storage.remove_tree(staging)
    else:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"{out}: cannot create the output folder ({e.strerror or e})") from None
        for stale in ("_report.json", "_cutflow.json"):  # an interrupted re-run must not look complete
            (out / stale).unlink(missing_ok=True)
        staging = out / "_staging"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()

    metadata = {"feature_set": set_name, "features": features, "selection": selection.to_dict(),
                "code_version": code_version(), **opts.extra_metadata}
    file_info = {c.path: c.info for cs in good.values() for c in cs}
    if is_dijet:
        from sparkad.generate.dijet import SUBSTRUCTURE

        # the generator's conventions; a real NanoAOD's FatJet_tau* follow CMS's (the same one-pass kT axes)
        metadata["substructure"] = fileset.generator.get("substructure", SUBSTRUCTURE) if fileset.generator else SUBSTRUCTURE
        proc = DijetProcessor(features=features, selection=selection, staging_dir=staging, datasets=datasets,
                              file_info=file_info, nan_features=nan_features, metadata=metadata)
    else:
        proc = HLFProcessor(features=features, selection=selection, staging_dir=staging, datasets=datasets,
                            file_info=file_info, btag_conf=btag_conf, nan_features=nan_features, metadata=metadata)

    # 4. run, one coffea Runner per schema (NanoAOD-like vs Delphes)
    groups: dict[str, dict] = {}
    for name, checks in good.items():
        for c in checks:
            schema = "delphes" if c.info.name == "delphes" else "nano"
            groups.setdefault(schema, {}).setdefault(name, {"files": {}})["files"][c.path] = c.treename
    closers: list = []
    acc: dict = {}
    try:
        try:
            executor = _make_executor(opts, closers) if groups else None
        except (OSError, TimeoutError) as e:
            where = f"Dask scheduler {opts.scheduler}" if opts.scheduler else "local Dask cluster"
            raise SparkadError(f"{where}: cannot connect ({_root_cause(e)})") from None
        NanoAODSchema.warn_missing_crossrefs = False
        for schema, cfileset in groups.items():
            # align_clusters: chunks start on ROOT cluster boundaries, so no basket is decompressed twice
            runner = processor.Runner(executor=executor, chunksize=opts.chunksize, align_clusters=True,
                                      schema=DelphesSchema if schema == "delphes" else NanoAODSchema)
            # coffea draws its rich bars even with status=False: silence them when asked to be quiet
            quiet = contextlib.nullcontext() if opts.progress else contextlib.redirect_stdout(io.StringIO())
            with warnings.catch_warnings(), quiet:
                warnings.simplefilter("ignore")
                try:
                    result = runner(cfileset, processor_instance=proc, uproot_options=_uproot_options(cfileset))
                except KeyboardInterrupt:
                    raise
                except Exception as e:
                    bad = _failing_file(e) or "input"
                    raise SparkadError(f"{bad}: failed while processing ({_root_cause(e)})") from None
            acc = processor.accumulate([acc, result]) if acc else result
    finally:
        for close in closers:
            try:
                close()
            except Exception:
                pass

    # 5. reconcile: read = written + cut, per dataset; plus the events in skipped files
    counts = acc.get("counts", {})
    summary = {}
    for name, checks in good.items():
        expected = sum(c.entries for c in checks)
        got = counts.get(name, {"events_in": 0, "selected": 0, "written": 0, "sumw_written": 0.0})
        if got["events_in"] != expected:
            raise SparkadError(f"dataset {name}: processed {got['events_in']} events but its files hold {expected}")
        summary[name] = {
            "files_read": len(checks),
            "events_in": got["events_in"], "selected": got["selected"], "written": got["written"],
            "cut": got["events_in"] - got["written"], "sumw_written": got["sumw_written"],
            # selected, then dropped because a feature or the weight is NaN/inf: corrupt input, not physics
            "dropped_non_finite": got["selected"] - got["written"],
            "files_skipped": sum(1 for s in skipped if s["dataset"] == name),
            "events_in_skipped_files": sum((s["entries"] or 0) for s in skipped if s["dataset"] == name),
            "weighting": datasets[name]["weighting"], "label": datasets[name]["label"],
            "is_data": datasets[name]["is_data"],
        }

    for name, d in summary.items():
        if d["dropped_non_finite"]:
            log(f"warning: dataset {name}: {d['dropped_non_finite']} selected event(s) dropped because a feature "
                f"or the weight is NaN or inf (corrupt input?); per file: step 'finite features' in _cutflow.json")

    # 6. publish: staged dataset folders replace old ones; an empty dataset keeps its schema
    leftovers = drop_attempt_leftovers(staging, acc.get("files_written", []))
    if leftovers:
        log(f"removed {leftovers} temporary file(s) of chunk attempts that did not finish (a worker lost, the "
            f"chunk redone)")
    for name in fileset.datasets:
        src = storage.join(staging, name)
        if not storage.list_files(src, ".parquet"):
            empty = hlf_table(name, datasets[name]["label"], {k: np.zeros(0, np.int64) for k in
                              ("run", "luminosityBlock", "event")}, np.zeros(0), {f: np.zeros(0, np.float32) for f in features},
                              dict(metadata, dataset=name, note="no event passed the selection"))
            write_atomic(empty, storage.join(src, "empty.parquet"))
        storage.publish_tree(src, storage.join(out, name))
    storage.remove_tree(staging)

    cutflow = acc.get("cutflow", {})
    cutflow_doc = {}
    for name, per_file in cutflow.items():
        total: dict[str, int] = {}
        for steps in per_file.values():
            for step, n in steps.items():
                total[step] = total.get(step, 0) + n
        cutflow_doc[name] = {"total": total, "files": per_file}
    storage.write_json(cutflow_doc, storage.join(out, "_cutflow.json"))

    totals = {k: sum(s[k] for s in summary.values()) for k in ("events_in", "written", "cut", "events_in_skipped_files")}
    report = {
        "complete": True,
        "fileset": fileset.source,
        "feature_set": set_name, "features": features, "selection": selection.to_dict(),
        "on_missing": opts.on_missing, "executor": opts.executor, "chunksize": opts.chunksize,
        "code_version": code_version(),
        "files_read": [c.path for cs in good.values() for c in cs],
        "files_skipped": skipped,
        "nan_features": notes,
        "datasets": summary,
        "totals": totals,
        "parquet_files": sorted(acc.get("files_written", [])),
        **({"analysis": "dijet", "undefined_ratios": acc.get("undefined_ratios", {})} if is_dijet else {}),
        "chunks": acc.get("chunks", 0),
        "elapsed_s": round(time.time() - t0, 3),
    }
    storage.write_json(report, storage.join(out, "_report.json"))  # last: the completion marker
    return report

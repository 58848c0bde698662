"""Model directories on an object store (``s3://bucket/models/x``).

Reading: a model directory at an s3:// prefix is copied once into a local cache,
``$SPARKAD_MODEL_CACHE`` (default ``~/.cache/sparkad/models``, or under ``$XDG_CACHE_HOME``), in a
folder named by the model's content hash; every later use lists the prefix and copies only the objects
that changed (size or time), so a run reads networks.npz from S3 once. Everything downstream — the
scorer, the engines that ship ``model.json`` and ``networks.npz`` to their tasks as bytes, the
evaluation — works on that local folder; the tasks never read S3 for the model. ``checkpoint/`` (training
state, not needed to score) is not copied.

Writing (``sparkad train --out s3://...``): training writes into a local work folder,
``~/.cache/sparkad/train/<hash of the URI>/`` (its checkpoints included), then publishes it object by
object: the marker (``model.json``, or ``scan.json`` of a CWoLa scan) is deleted first and written last,
so a prefix is a complete model directory only when its marker exists. A run killed before the end
leaves no marker at the prefix and its work folder on this machine: the same command resumes from the
work folder's checkpoint. After publishing, the work folder is removed; ``checkpoint/`` is published
with the model, so a re-run elsewhere (or after a completed run) starts from it, as a local re-run
starts from ``MODEL_DIR/checkpoint/``.
"""
from __future__ import annotations

import functools
import hashlib
import inspect
import json
import os
import shutil
from pathlib import Path

from sparkad.core import storage
from sparkad.core.errors import SparkadError

#: what marks a (complete) model directory: model.json; a CWoLa scan's folder: scan.json
MARKERS = ("model.json", "scan.json")
#: not needed to score or evaluate: not copied into the cache
NOT_NEEDED = ("checkpoint/", "_workers/")
#: carried from the prefix into a new work folder, so that training resumes where the published run ended
RESUME = ("checkpoint/", "history.jsonl")
MANIFEST = ".objects.json"


def _cache_base() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or (Path.home() / ".cache")
    return Path(base) / "sparkad"


def cache_root() -> Path:
    """Where model directories read from an object store are kept (one folder per content hash)."""
    given = os.environ.get("SPARKAD_MODEL_CACHE")
    return Path(given) if given else _cache_base() / "models"


def work_root() -> Path:
    """Where ``train --out s3://...`` trains before publishing (one folder per URI)."""
    given = os.environ.get("SPARKAD_MODEL_CACHE")
    return (Path(given) / "train") if given else _cache_base() / "train"


def model_text(model_dir) -> str:
    """How a model directory is named in reports: its URI, or its resolved local path."""
    return storage.resolved_text(model_dir)


def local_model_dir(model_dir) -> Path:
    """A local folder holding the model directory ``model_dir``: the folder itself when local (as given,
    unchanged), else the cached copy of the s3:// prefix (see the module docstring). Refuses in one
    line naming the URI: a missing bucket, an unreachable server, a prefix without model.json/scan.json
    (not a complete model directory), objects that do not match their content hash."""
    loc = storage.location(model_dir)
    if not storage.is_remote(loc):
        return loc if isinstance(model_dir, Path) else Path(model_dir)
    return _fetch(loc)


def _fetch(uri: str) -> Path:
    storage.check_bucket(uri)
    objects = {rel: v for rel, v in storage.tree_info(uri).items() if not rel.startswith(NOT_NEEDED)}
    marker = next((m for m in MARKERS if m in objects), None)
    if marker is None:
        raise SparkadError(f"{uri}: not a complete sparkad model directory (no model.json — not a model, or its "
                           f"training did not complete)")
    head = storage.read_bytes(storage.join(uri, marker))
    try:
        key = json.loads(head).get("content_hash") if marker == "model.json" else None
    except (ValueError, AttributeError):
        key = None
    if not isinstance(key, str) or not key.isalnum():
        key = hashlib.sha256(head).hexdigest()[:20]
    local = cache_root() / key
    local.mkdir(parents=True, exist_ok=True)
    try:
        have = json.loads((local / MANIFEST).read_text())
    except (OSError, ValueError):
        have = {}
    for f in sorted(set(have) - set(objects)):  # gone from the prefix (e.g. a removed mjj_thresholds.json)
        (local / f).unlink(missing_ok=True)
    markers = sorted((r for r in objects if r.rsplit("/", 1)[-1] in MARKERS), key=lambda r: (-r.count("/"), r))
    for rel in [r for r in sorted(objects) if r not in set(markers)] + markers:  # the markers last, as published
        if rel == marker:
            (local / rel).parent.mkdir(parents=True, exist_ok=True)
            from sparkad.core.atomic import write_bytes_atomic
            write_bytes_atomic(head, local / rel)  # the bytes the key came from
        elif have.get(rel) != list(objects[rel]) or not (local / rel).is_file():
            storage.download_file(storage.join(uri, rel), local / rel)
    from sparkad.core.atomic import write_json_atomic
    write_json_atomic({r: list(v) for r, v in objects.items()}, local / MANIFEST)
    if marker == "model.json":
        _check_hash(uri, local)
    return local


def _check_hash(uri: str, local: Path) -> None:
    from sparkad.model.directory import content_hash, read_model_files
    meta_bytes, npz = read_model_files(local)
    try:
        meta = json.loads(meta_bytes)
    except ValueError as e:
        raise SparkadError(f"{uri}/model.json: not valid JSON ({e})") from None
    expected = meta.get("content_hash") if isinstance(meta, dict) else None
    if expected and content_hash(meta, npz) != expected:
        (local / MANIFEST).unlink(missing_ok=True)  # copied again next time
        raise SparkadError(f"{uri}: model.json and networks.npz do not match their content hash {expected} "
                           f"(being rewritten by a training run, or corrupted: retry, or retrain)")


def _work_folder(uri: str) -> tuple[Path, bool]:
    """The local work folder of ``train --out URI`` and whether its checkpoint came from the prefix."""
    storage.check_bucket(uri)
    work = work_root() / hashlib.sha256(uri.encode()).hexdigest()[:16]
    restored = False
    if not (work.is_dir() and any(work.iterdir())):  # no run of this URI left here: resume where the
        for rel in storage.tree_info(uri):             # published one ended (its checkpoint), as locally
            if rel.startswith(RESUME):
                storage.download_file(storage.join(uri, rel), work / rel)
                restored = True
    work.mkdir(parents=True, exist_ok=True)
    return work, restored


def writes_model_dir(fn):
    """Decorate a training function with an ``out`` parameter (the model directory): given an s3:// URI
    there, it trains into the URI's local work folder (see the module docstring), published at the URI
    when it returns (not when it was interrupted, ``{"interrupted": True}``: as after a kill, the work
    folder is kept and the same command resumes from it)."""
    sig = inspect.signature(fn)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        bound = sig.bind(*args, **kwargs)
        loc = storage.location(bound.arguments["out"])
        if not storage.is_remote(loc):
            return fn(*args, **kwargs)
        work, restored = _work_folder(loc)
        bound.arguments["out"] = work
        try:
            result = fn(*bound.args, **bound.kwargs)
        except SparkadError as e:
            if str(work) not in str(e):
                raise
            if restored:  # e.g. the prefix's checkpoint is of another configuration: name it, drop the copy
                shutil.rmtree(work, ignore_errors=True)
                raise SparkadError(str(e).replace(str(work), loc)) from None
            raise SparkadError(f"{loc}: {e}") from None
        if isinstance(result, dict) and result.get("interrupted"):
            return result
        storage.publish_local_tree(work, loc, MARKERS, skip=("_workers/",))
        shutil.rmtree(work, ignore_errors=True)
        return result

    return wrapper


def publish_file(model_dir, local_model: Path, rel: str) -> None:
    """After a file was added to the local copy of a model directory (e.g. ``mjj_thresholds.json`` by
    ``sparkad bumphunt --save-threshold``): upload it to the s3:// prefix too (nothing to do locally)."""
    loc = storage.location(model_dir)
    if storage.is_remote(loc):
        storage.upload_file(Path(local_model) / rel, storage.join(loc, rel))

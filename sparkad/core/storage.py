"""Where outputs live: a local folder (a ``Path``) or an object-store prefix (``s3://bucket/key``, a
``str``). One small set of operations for both, so that callers do not test for URLs themselves.

Object stores go through pyarrow's own filesystems (no extra dependency). Credentials, region and
endpoint come the standard way — ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` / ``AWS_PROFILE``,
``~/.aws/config``, ``AWS_ENDPOINT_URL`` for S3-compatible servers — and never from the URI: a URI
carrying them is refused, so they cannot end up in a report.

An object store has no rename: a "folder" is published by copying its objects from a staging prefix
and deleting the old ones (``publish_tree``); callers keep their completion promise by deleting the
marker object first and writing it last. A single object PUT is atomic (whole object or nothing), so
files need no temporary name there.
"""
from __future__ import annotations

import shutil
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

from sparkad.core.errors import ConfigError, SparkadError

REMOTE_SCHEMES = ("s3",)


def is_remote(p) -> bool:
    """An object-store URI (``s3://...``); a ``Path`` is always local."""
    return isinstance(p, str) and urlsplit(p).scheme.lower() in REMOTE_SCHEMES


def location(p):
    """``p`` as a location: the URI string for an object store, else a ``Path``. Refuses URI schemes
    that are neither (``gs://``, ``hdfs://``: not supported yet) and URIs with credentials in them."""
    if isinstance(p, Path):
        return p
    s = str(p)
    if "://" in s:
        parts = urlsplit(s)
        if parts.scheme.lower() not in REMOTE_SCHEMES:
            raise ConfigError(f"{s}: unsupported storage scheme {parts.scheme}:// (local folders and s3:// only)")
        if "@" in parts.netloc:
            raise ConfigError(f"{parts.scheme}://…@{parts.netloc.rsplit('@', 1)[1]}{parts.path}: credentials in the URI "
                              f"are refused (they would be recorded in reports); use AWS_ACCESS_KEY_ID / "
                              f"AWS_SECRET_ACCESS_KEY or ~/.aws")
        if not parts.netloc:
            raise ConfigError(f"{s}: no bucket in the URI (s3://BUCKET/PREFIX)")
        return s.rstrip("/")
    return Path(s)


def join(base, *parts):
    if is_remote(base):
        return "/".join([base.rstrip("/"), *(str(x).strip("/") for x in parts)])
    return Path(base).joinpath(*parts)


def name(p) -> str:
    return p.rstrip("/").rsplit("/", 1)[-1] if is_remote(p) else Path(p).name


def filesystem(uri: str):
    """(pyarrow filesystem, path inside it) for an object-store URI."""
    import pyarrow.fs as pafs

    try:
        return pafs.FileSystem.from_uri(uri)
    except (OSError, ValueError) as e:
        raise SparkadError(f"{uri}: cannot open the object store ({_first_line(e)})") from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:300] if text else type(e).__name__


@contextmanager
def _errors(uri, doing: str = "reach"):
    """An object-store failure (no server, no bucket, access denied) as one line naming the URI."""
    try:
        yield
    except SparkadError:
        raise
    except OSError as e:
        raise SparkadError(f"{uri}: cannot {doing} the object store ({_first_line(e)})") from None


def _info(uri: str):
    fs, path = filesystem(uri)
    with _errors(uri):
        return fs.get_file_info(path)


def check_bucket(uri: str) -> None:
    """Refuse, before any work, an s3:// URI whose bucket does not exist or cannot be reached."""
    import pyarrow.fs as pafs
    bucket = urlsplit(uri).netloc
    fs, _ = filesystem(uri)
    with _errors(uri):
        if fs.get_file_info(bucket).type != pafs.FileType.Directory:
            raise ConfigError(f"{uri}: bucket {bucket} does not exist (or these credentials cannot see it)")


def is_file(p) -> bool:
    if is_remote(p):
        import pyarrow.fs as pafs
        return _info(p).type == pafs.FileType.File
    return Path(p).is_file()


def is_dir(p) -> bool:
    """A local folder, or a prefix holding at least one object."""
    if is_remote(p):
        import pyarrow.fs as pafs
        return _info(p).type == pafs.FileType.Directory
    return Path(p).is_dir()


def read_bytes(p) -> bytes:
    if is_remote(p):
        fs, path = filesystem(p)
        with _errors(p, "read from"), fs.open_input_stream(path) as f:
            return f.read()
    return Path(p).read_bytes()


def write_bytes(data: bytes, p):
    """Local: temporary file + rename; object store: one PUT (atomic per object)."""
    if is_remote(p):
        fs, path = filesystem(p)
        with _errors(p, "write to"), fs.open_output_stream(path) as f:
            f.write(data)
        return p
    from sparkad.core.atomic import write_bytes_atomic
    return write_bytes_atomic(data, p)


def write_json(obj, p):
    """``obj`` as standard JSON, exactly as ``atomic.write_json_atomic`` writes it locally."""
    if not is_remote(p):
        from sparkad.core.atomic import write_json_atomic
        return write_json_atomic(obj, p)
    import json

    from sparkad.core.jsonsafe import jsonable
    return write_bytes((json.dumps(jsonable(obj), indent=2, allow_nan=False, default=str) + "\n").encode(), p)


def list_files(p, suffix: str = "") -> list:
    """The files directly in folder/prefix ``p`` whose name ends with ``suffix``, sorted."""
    if is_remote(p):
        import pyarrow.fs as pafs
        fs, path = filesystem(p)
        with _errors(p, "list"):
            infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True, recursive=False))
        scheme = urlsplit(p).scheme
        return sorted(f"{scheme}://{i.path}" for i in infos
                      if i.type == pafs.FileType.File and i.base_name.endswith(suffix))
    return sorted(Path(p).glob(f"*{suffix}"))


def remove_file(p) -> None:
    if is_remote(p):
        import pyarrow.fs as pafs
        fs, path = filesystem(p)
        with _errors(p, "delete from"):
            if fs.get_file_info(path).type == pafs.FileType.File:
                fs.delete_file(path)
        return
    Path(p).unlink(missing_ok=True)


def remove_tree(p) -> None:
    """Delete a folder / every object under a prefix; nothing there is fine."""
    if is_remote(p):
        import pyarrow.fs as pafs
        fs, path = filesystem(p)
        with _errors(p, "delete from"):
            if fs.get_file_info(path).type == pafs.FileType.Directory:
                fs.delete_dir(path)
        return
    shutil.rmtree(p, ignore_errors=True)


def publish_tree(staging, final):
    """Replace ``final`` by the complete ``staging`` folder. Locally a rename (readers see the old or
    the new); on an object store a copy of every object then the deletion of ``staging`` — not atomic,
    which is why every caller deletes its completion marker before and writes it after."""
    if not is_remote(final):
        from sparkad.core.parquet_io import publish_dir
        return publish_dir(Path(staging), Path(final))
    import pyarrow.fs as pafs
    fs, src = filesystem(staging)
    _, dst = filesystem(final)
    remove_tree(final)
    with _errors(final, "copy within"):
        for info in fs.get_file_info(pafs.FileSelector(src, recursive=True)):
            if info.type == pafs.FileType.File:
                fs.copy_file(info.path, dst + info.path[len(src):])
    remove_tree(staging)
    return final


def mkdirs(p) -> None:
    """Create a local folder (and parents); an object-store prefix needs none."""
    if not is_remote(p):
        Path(p).mkdir(parents=True, exist_ok=True)


def absolute(p):
    """A local path made absolute (executors run in other working folders); a URI as it is."""
    p = location(p)
    return p if is_remote(p) else p.absolute()


def resolved_text(p) -> str:
    """The text recorded in reports: the resolved local path, or the URI."""
    p = location(p)
    return p if is_remote(p) else str(p.resolve())


def list_tree(p) -> list:
    """Every file under folder/prefix ``p`` (recursively), sorted."""
    if is_remote(p):
        import pyarrow.fs as pafs
        fs, path = filesystem(p)
        scheme = urlsplit(p).scheme
        with _errors(p, "list"):
            infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True, recursive=True))
        return sorted(f"{scheme}://{i.path}" for i in infos if i.type == pafs.FileType.File)
    return sorted(f for f in Path(p).rglob("*") if f.is_file())


def upload_file(local, uri: str) -> str:
    """Copy a local file to an object (streamed; the object appears whole when the upload completes)."""
    import pyarrow.fs as pafs
    fs, key = filesystem(uri)
    with _errors(uri, "write to"):
        pafs.copy_files(str(local), key, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)
    return uri


def upload_tree(local_dir, uri: str) -> str:
    """Every file under a local folder to the same relative keys under ``uri``."""
    local_dir = Path(local_dir)
    for f in sorted(local_dir.rglob("*")):
        if f.is_file():
            upload_file(f, join(uri, f.relative_to(local_dir).as_posix()))
    return uri


def tree_info(p) -> dict:
    """{relative path: (size, mtime in ns)} of every object under prefix ``p`` (recursively)."""
    import pyarrow.fs as pafs
    fs, path = filesystem(p)
    with _errors(p, "list"):
        infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True, recursive=True))
    base = path.rstrip("/") + "/"
    return {i.path[len(base):]: (i.size, i.mtime_ns) for i in infos
            if i.type == pafs.FileType.File and i.path.startswith(base)}


def download_file(uri: str, local) -> Path:
    """Copy an object to a local file (streamed to a hidden temporary beside it, then renamed: a reader
    sees the whole file or none)."""
    import pyarrow.fs as pafs

    from sparkad.core.atomic import atomic_path
    local = Path(local)
    local.parent.mkdir(parents=True, exist_ok=True)
    fs, key = filesystem(uri)
    with _errors(uri, "read from"), atomic_path(local) as tmp:
        pafs.copy_files(key, str(tmp), source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem())
    return local


def download_tree(uri: str, local_dir, skip=()) -> list[str]:
    """Every object under ``uri`` to the same relative paths under a local folder, except those whose
    relative path starts with one of ``skip``; returns the relative paths copied."""
    rels = sorted(r for r in tree_info(uri) if not r.startswith(tuple(skip)))
    for rel in rels:
        download_file(join(uri, rel), Path(local_dir) / rel)
    return rels


def publish_local_tree(local_dir, uri: str, markers=(), skip=()) -> str:
    """Publish a complete local folder at ``uri`` with the completion promise of a local rename: every
    object under ``uri`` named like one of ``markers`` is deleted first, every other file is uploaded
    (single PUTs: an object is whole or absent), the markers last (deepest first, the top-level one
    at the very end). A run killed at any point leaves no top-level marker; re-running uploads the
    same objects. Objects at ``uri`` that the folder does not hold are left alone (as files in a local
    folder written over). ``skip``: relative paths (prefixes) not uploaded."""
    local_dir = Path(local_dir)
    markers = tuple(markers)
    for rel in sorted(tree_info(uri)):
        if rel.rsplit("/", 1)[-1] in markers:
            remove_file(join(uri, rel))
    files = sorted(f.relative_to(local_dir).as_posix() for f in local_dir.rglob("*")
                   if f.is_file() and not f.name.startswith("."))  # hidden: temporaries, locks
    files = [f for f in files if not f.startswith(tuple(skip))]
    last = sorted((f for f in files if f.rsplit("/", 1)[-1] in markers), key=lambda f: (-f.count("/"), f))
    for rel in [f for f in files if f not in set(last)] + last:
        upload_file(local_dir / rel, join(uri, rel))
    return uri


@contextmanager
def local_output(out, markers=(), fetch: bool = False, prefix: str = "sparkad-out-"):
    """A local folder to write an output folder into: ``out`` itself when it is local; for an s3://
    prefix a temporary folder (its bucket checked first; with ``fetch`` the prefix's objects copied
    into it, for outputs that update their own state), published at the prefix on a clean exit
    (``publish_local_tree``: the markers deleted first, written last) and removed."""
    out = location(out)
    if not is_remote(out):
        Path(out).mkdir(parents=True, exist_ok=True)
        yield Path(out)
        return
    import tempfile
    check_bucket(out)
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        if fetch:
            download_tree(out, tmp)
        yield Path(tmp)
        publish_local_tree(tmp, out, markers)


def checked_output(out):
    """An output location: a local folder as a Path, or an s3:// prefix whose bucket is checked before the
    work (the output is written locally and published marker-last: ``local_output``)."""
    out = location(out)
    if is_remote(out):
        check_bucket(out)
    return out

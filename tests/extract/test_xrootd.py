"""`sparkad extract` reading root:// URLs from a real XRootD server (Debian's xrootd-server, started on
127.0.0.1 by the fixture; .ci/run installs it): the same rows as from the local files, and a missing
remote file, a refused connection and a file truncated on the server each give one line or a skip."""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest

from rootfiles import EVENTS, events_arrays, write_root, write_truncated


def sparkad(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "sparkad.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _varied_events(n_copies: int, offset: int):
    """The hand-made events of tests/rootfiles.py, n_copies times with distinct event numbers and pTs."""
    return [dict(e, event=e["event"] + 10_000 * (i + offset),
                 muons=[(m[0] * (1 + 0.01 * i), *m[1:]) for m in e["muons"]],
                 jets=[(j[0] * (1 + 0.02 * i), *j[1:]) for j in e["jets"]])
            for i in range(n_copies) for e in EVENTS]


@pytest.fixture(scope="module")
def server():
    """A real xrootd exporting a fresh folder on 127.0.0.1 (a free port); yields (url prefix, folder)."""
    exe = shutil.which("xrootd")
    if exe is None:
        pytest.skip("the xrootd server is not installed (Debian: apt-get install xrootd-server; .ci/run installs it)")
    if not sys.platform.startswith("linux"):
        pytest.importorskip("XRootD.client", reason="the XRootD Python client is a dependency on Linux only")
    root = Path(tempfile.mkdtemp(prefix="sparkad-xrootd-"))
    root.chmod(0o755)  # as root, xrootd serves as `nobody`, which must reach the files
    data, admin = root / "data", root / "admin"
    data.mkdir()
    admin.mkdir()
    port = _free_port()
    cfg = root / "xrootd.cfg"
    cfg.write_text(f"xrd.port {port}\nxrd.allow host localhost\nall.export {data}\n"
                   f"all.adminpath {admin}\nall.pidpath {admin}\n")
    cmd = [exe, "-c", str(cfg), "-l", str(root / "xrootd.log")]
    if os.geteuid() == 0:  # xrootd refuses to run as the superuser
        cmd += ["-R", "nobody"]
        shutil.chown(admin, "nobody")
        shutil.chown(root, "nobody")  # the log file
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    logs = "".join(p.read_text()[-2000:] for p in root.glob("xrootd.log*"))
                    pytest.fail(f"xrootd did not start on port {port} (exit {proc.poll()}):\n{logs}")
                time.sleep(0.1)
        yield f"root://127.0.0.1:{port}/", data
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def files(server):
    """Two good files (200 events in 5 clusters each), a truncated one, and their root:// URLs."""
    url, data = server
    good = [write_root(data / f"part{i}.root", [events_arrays(_varied_events(10, 10 * k)) for k in range(5 * i, 5 * i + 5)])
            for i in range(2)]
    truncated = write_truncated(data / "cut.root")
    return {"good": good, "truncated": truncated, "url": lambda p: f"{url}{p}", "data": data}


def _rows(folder: Path) -> pd.DataFrame:
    df = pd.read_parquet(folder)
    return df.sort_values(list(df.columns)).reset_index(drop=True)


def _one_line_error(r) -> str:
    assert r.returncode == 1, r.stdout + r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    return lines[0]


def test_rows_over_root_equal_rows_from_local_files(files, tmp_path):
    local = sparkad("extract", *files["good"], "--out", tmp_path / "local", "--dataset", "ds", "--chunksize", "64", "-q")
    assert local.returncode == 0, local.stderr
    remote = sparkad("extract", *map(files["url"], files["good"]), "--out", tmp_path / "remote", "--dataset", "ds",
                     "--chunksize", "64", "-q")
    assert remote.returncode == 0, remote.stderr
    # the fileset YAML with a root:// wildcard, read by worker processes (futures executor)
    (tmp_path / "fs.yaml").write_text(f"datasets:\n  ds:\n    files: [{files['url'](files['data'])}/part*.root]\n")
    fileset = sparkad("extract", "--fileset", tmp_path / "fs.yaml", "--out", tmp_path / "fileset", "--chunksize", "64",
                      "--executor", "futures", "--workers", "2", "-q")
    assert fileset.returncode == 0, fileset.stderr

    want = _rows(tmp_path / "local" / "ds")
    chunks = json.loads((tmp_path / "local" / "_report.json").read_text())["chunks"]
    assert chunks > 2  # several reads per file
    assert len(want) == 200  # 2 files × 50 copies × the 2 selected events of EVENTS
    for out in ("remote", "fileset"):
        pd.testing.assert_frame_equal(_rows(tmp_path / out / "ds"), want, check_exact=True)
        report = json.loads((tmp_path / out / "_report.json").read_text())
        assert report["files_read"] == [files["url"](p) for p in files["good"]]
        assert report["datasets"]["ds"]["events_in"] == 400 and report["chunks"] == chunks


def test_missing_remote_file_is_one_line(files, tmp_path):
    url = files["url"](files["data"] / "absent.root")
    line = _one_line_error(sparkad("extract", url, "--out", tmp_path / "o", "-q"))
    assert line.startswith(f"error: {url}: file not found on the server")
    assert not (tmp_path / "o" / "_report.json").exists()


def test_wildcard_matching_nothing_is_one_line(files, tmp_path):
    url = files["url"](files["data"] / "nothing*.root")
    line = _one_line_error(sparkad("extract", url, "--out", tmp_path / "o", "-q"))
    assert line == f"error: FILES: pattern {url!r} matches no file"


def test_refused_connection_is_one_line_and_fast(files, tmp_path):
    port = _free_port()  # nothing listens there
    url = f"root://127.0.0.1:{port}/{files['good'][0]}"
    t0 = time.monotonic()
    line = _one_line_error(sparkad("extract", url, "--out", tmp_path / "o", "-q", timeout=60))
    elapsed = time.monotonic() - t0
    assert line.startswith(f"error: {url}: cannot connect to 127.0.0.1:{port} (Connection refused)")
    assert elapsed < 20, elapsed  # the XRootD client alone retries for minutes


def test_truncated_file_on_the_server_is_reported_like_a_local_one(files, tmp_path):
    local = _one_line_error(sparkad("extract", files["truncated"], "--out", tmp_path / "o", "-q"))
    url = files["url"](files["truncated"])
    remote = _one_line_error(sparkad("extract", url, "--out", tmp_path / "o", "-q"))
    assert "truncated ROOT file" in remote
    assert remote == local.replace(str(files["truncated"]), url)


def test_skip_bad_files_reports_remote_files(files, tmp_path):
    good = files["url"](files["good"][0])
    bad = [files["url"](files["data"] / "absent.root"), files["url"](files["truncated"]),
           f"root://127.0.0.1:{_free_port()}/{files['good'][1]}"]
    r = sparkad("extract", good, *bad, "--out", tmp_path / "o", "--dataset", "mix", "--skip-bad-files", "-q")
    assert r.returncode == 0, r.stderr
    report = json.loads((tmp_path / "o" / "_report.json").read_text())
    assert [s["file"] for s in report["files_skipped"]] == bad
    assert all(f"skipping {u}: " in r.stderr for u in bad)
    assert report["files_read"] == [good] and report["datasets"]["mix"]["events_in"] == 200
    assert len(pd.read_parquet(tmp_path / "o" / "mix")) == 100

"""Spark session helpers: a JVM check with a clear message, and executors on this same Python."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

from sparkad.core.errors import SparkadError

JAVA_HELP = ("Spark needs a Java runtime (17 or 21): install one (e.g. `apt install openjdk-17-jre-headless`, "
             "or `pip install install-jdk` and `python -c \"import jdk; jdk.install('17')\"`) and set JAVA_HOME")


def check_java() -> str:
    """Path of the java executable Spark will use, or a SparkadError saying how to get one."""
    home = os.environ.get("JAVA_HOME")
    java = os.path.join(home, "bin", "java") if home else shutil.which("java")
    if not java or not os.path.exists(java):
        raise SparkadError(f"no Java runtime found{' in JAVA_HOME=' + home if home else ' on PATH'}: {JAVA_HELP}")
    try:
        subprocess.run([java, "-version"], capture_output=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError) as e:
        raise SparkadError(f"{java} does not run ({e}): {JAVA_HELP}") from None
    return java


def same_python_for_executors() -> None:
    """Executors must run the driver's Python (and its installed sparkad)."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)


CONNECT_HELP = "pip install 'pyspark[connect]' (grpcio, grpcio-status, googleapis-common-protos, zstandard)"


def is_connect(spark) -> bool:
    """A Spark Connect session (``sc://``): DataFrames only, no SparkContext / RDD API."""
    return type(spark).__module__.startswith("pyspark.sql.connect")


def remote_address(url: str) -> tuple[str, int]:
    """Host and port of a Spark Connect URL ``sc://host[:port][/;param=...]`` (15002: Connect's default)."""
    from urllib.parse import urlsplit

    if not url.startswith("sc://"):
        raise SparkadError(f"{url}: not a Spark Connect URL (sc://host:port)")
    try:
        u = urlsplit("http://" + url[len("sc://"):].split(";", 1)[0].split("/", 1)[0])
        host, port = u.hostname, u.port or 15002
    except ValueError as e:
        raise SparkadError(f"{url}: not a Spark Connect URL ({e})") from None
    if not host:
        raise SparkadError(f"{url}: not a Spark Connect URL (no host)")
    return host, port


def _connect_session(app: str, url: str):
    """A Spark Connect client session. The client needs no JVM; the server is checked first (a TCP
    connect), because the gRPC client retries a refused server for minutes before failing."""
    import socket

    try:
        import grpc  # noqa: F401
        import pyspark.sql.connect.session  # noqa: F401
    except ImportError as e:
        raise SparkadError(f"{url}: the Spark Connect client needs pyspark's connect extra ({e}): {CONNECT_HELP}") from None
    host, port = remote_address(url)
    try:
        socket.create_connection((host, port), timeout=10).close()
    except OSError as e:
        raise SparkadError(f"{url}: no Spark Connect server answers at {host}:{port} ({e.strerror or e})") from None
    from pyspark.sql import SparkSession

    return SparkSession.builder.remote(url).appName(app).getOrCreate()


def get_session(app: str, master: str | None = None, conf: dict | None = None):
    """A SparkSession (spark-submit's when one exists, else a new one on ``master``). ``master`` (or
    SPARK_REMOTE when no master is given) ``sc://host:port`` gives a Spark Connect session; ``conf``
    then stays with the server (static settings cannot be changed by a client)."""
    remote = master if master and master.startswith("sc://") else \
        (os.environ.get("SPARK_REMOTE") if not master and "PYSPARK_GATEWAY_PORT" not in os.environ else None)
    if remote:
        return _connect_session(app, remote)
    check_java()
    same_python_for_executors()
    from pyspark.sql import SparkSession

    b = SparkSession.builder.appName(app)
    if master:
        b = b.master(master)
        if master.startswith("local"):  # our own log lines tell the progress; Spark's bar would garble them
            b = b.config("spark.ui.showConsoleProgress", "false")
    for k, v in (conf or {}).items():
        b = b.config(k, v)
    return b.getOrCreate()


def session_cores(spark) -> int | None:
    """Task slots of the session: the SparkContext's default parallelism, or for a Connect session the
    server's ``spark.default.parallelism`` / ``local[N]`` master (None when the server does not say)."""
    if not is_connect(spark):
        return int(spark.sparkContext.defaultParallelism)
    for key in ("spark.default.parallelism", "spark.master"):
        try:
            v = spark.conf.get(key, None)
        except Exception:  # noqa: BLE001 - a server that hides its conf: unknown
            v = None
        if not v:
            continue
        if v.isdigit():
            return int(v)
        if v.startswith("local["):
            n = v[len("local["):].split(",")[0].rstrip("]")
            return os.cpu_count() if n == "*" else int(n) if n.isdigit() else None
        if v == "local":
            return 1
    return None


def _arrow_task(fn, items, job):
    """The Python function of ``map_tasks``' stage: one row per item index in, its pickled result out."""

    def run(batches):
        import pickle

        import pyarrow as pa

        schema = pa.schema([("i", pa.int64()), ("r", pa.binary())])
        for b in batches:
            for i in b.column(0).to_pylist():
                r = pickle.dumps(fn(items[i], job), protocol=pickle.HIGHEST_PROTOCOL)
                yield pa.RecordBatch.from_arrays([pa.array([i], pa.int64()), pa.array([r], pa.binary())], schema=schema)

    return run


def map_tasks(spark, fn, items: list, job=None, *, barrier: bool = False) -> list:
    """``fn(item, job)`` for every item, one Spark task each, the results in item order.

    One code path for classic and Spark Connect sessions: a DataFrame of item indices
    (``spark.range(n)`` in n partitions, one row each) mapped by ``mapInArrow`` to (index, pickled
    result); no RDD API, no broadcast (the items and the job travel inside the function, which Spark
    ships to every task once; keep the job small or made of bytes). ``barrier=True`` runs the n tasks
    as one barrier stage (all at once, ``BarrierTaskContext`` inside ``fn``). A failed task is retried
    by Spark like any other; the collected results are those of the successful attempts only."""
    import pickle

    n = len(items)
    if n == 0:
        return []
    df = spark.range(0, n, 1, n).mapInArrow(_arrow_task(fn, list(items), job), "i long, r binary", barrier=barrier)
    table = df.toArrow()
    idx = table.column("i").to_pylist()
    if sorted(idx) != list(range(n)):
        raise SparkadError(f"Spark returned results for {len(idx)} of {n} tasks (indices {sorted(set(idx))[:5]}...)")
    blobs = table.column("r").to_pylist()
    out = [None] * n
    for i, b in zip(idx, blobs):
        out[i] = pickle.loads(b)
    return out

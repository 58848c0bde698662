"""A real Spark standalone cluster: one master and workers started from pyspark's own classes
(`spark-class org.apache.spark.deploy.master.Master` / `...deploy.worker.Worker`) on 127.0.0.1, each in
its own process group, so that a worker, its executor JVM and their Python workers can be killed at once."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spark_home() -> str:
    from pyspark.find_spark_home import _find_spark_home
    return _find_spark_home()


def get_json(url: str, timeout: float = 5.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read().decode())


class StandaloneCluster:
    """Master + ``n_workers`` workers (``cores`` and ``memory`` each), logs and work folders in ``base``."""

    def __init__(self, base: Path, n_workers: int = 2, cores: int = 1, memory: str = "2g"):
        self.base, self.n_workers, self.cores, self.memory = Path(base), n_workers, cores, memory
        self.home = spark_home()
        self.master_port, self.ui_port = free_port(), free_port()
        self.url = f"spark://127.0.0.1:{self.master_port}"
        self.ui = f"http://127.0.0.1:{self.ui_port}"
        self.master = None
        self.workers: list[subprocess.Popen | None] = [None] * n_workers
        # executors and their Python workers inherit this environment (PYTHONPATH included), as they would
        # inherit a node's installed package. The master forgets a dead worker after 20 s, not 60: master and
        # workers must agree on it (a worker heartbeats every timeout / 4; a master that expects them sooner
        # drops live workers and their executors)
        timeout = "-Dspark.worker.timeout=20"
        self.env = dict(os.environ, SPARK_HOME=self.home, SPARK_LOCAL_IP="127.0.0.1", PYSPARK_PYTHON=sys.executable,
                        SPARK_MASTER_OPTS=timeout, SPARK_WORKER_OPTS=timeout)

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        with open(self.base / f"{name}.log", "ab") as log:
            return subprocess.Popen([str(Path(self.home) / "bin" / "spark-class"), *args], stdout=log,
                                    stderr=subprocess.STDOUT, env=self.env, cwd=self.base, start_new_session=True)

    def log_tail(self, name: str, n: int = 3000) -> str:
        p = self.base / f"{name}.log"
        return p.read_bytes()[-n:].decode(errors="replace") if p.exists() else ""

    def start(self, timeout: float = 180) -> StandaloneCluster:
        self.base.mkdir(parents=True, exist_ok=True)
        self.master = self._spawn("master", ["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                                             "--port", str(self.master_port), "--webui-port", str(self.ui_port)])
        for i in range(self.n_workers):
            self.start_worker(i, wait=False)
        self.wait_workers(self.n_workers, timeout)
        return self

    def start_worker(self, i: int, wait: bool = True, timeout: float = 120) -> None:
        work = self.base / f"worker{i}"
        work.mkdir(exist_ok=True)
        self.workers[i] = self._spawn(f"worker{i}", [
            "org.apache.spark.deploy.worker.Worker", self.url, "--cores", str(self.cores), "--memory", self.memory,
            "--host", "127.0.0.1", "--webui-port", str(free_port()), "--work-dir", str(work)])
        if wait:
            self.wait_workers(self.n_workers, timeout)

    def state(self) -> dict:
        return get_json(f"{self.ui}/json")

    def alive_workers(self) -> list[dict]:
        return [w for w in self.state().get("workers", []) if w.get("state") == "ALIVE"]

    def wait_workers(self, n: int, timeout: float) -> None:
        """Until the master lists ``n`` ALIVE workers, all of them ours and running."""
        t_end = time.time() + timeout
        while True:
            for name, p in [("master", self.master)] + [(f"worker{i}", w) for i, w in enumerate(self.workers)]:
                if p is not None and p.poll() is not None:
                    raise RuntimeError(f"{name} exited with {p.returncode}:\n{self.log_tail(name)}")
            try:
                if len(self.alive_workers()) == n:
                    return
            except OSError:
                pass  # the master's UI is not up yet
            if time.time() > t_end:
                raise RuntimeError(f"no {n} workers registered within {timeout:.0f} s:\n{self.log_tail('master')}")
            time.sleep(0.5)

    def kill_worker(self, i: int) -> None:
        """SIGKILL worker ``i``'s whole process group: the worker JVM, its executor JVM, their Python workers."""
        p = self.workers[i]
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait(30)
        self.workers[i] = None

    def worker_of_pid(self, pid: int) -> int | None:
        """Which of our workers' process groups ``pid`` belongs to."""
        try:
            pgid = os.getpgid(pid)
        except ProcessLookupError:
            return None
        return next((i for i, w in enumerate(self.workers) if w is not None and w.pid == pgid), None)

    def stop(self) -> None:
        procs = [p for p in [*self.workers, self.master] if p is not None]
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        t_end = time.time() + 15
        for p in procs:
            try:
                p.wait(max(0.1, t_end - time.time()))
            except subprocess.TimeoutExpired:
                pass
            try:  # whatever is left of the group (an executor that ignored SIGTERM, a Python daemon)
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(30)

    def submit_env(self) -> dict:
        return dict(self.env)

    def submit(self, job: str, args: list[str], master: str | None = None, conf: dict | None = None,
               timeout: float = 600, wait: bool = True):
        """spark-submit ``jobs/<job>.py`` to this cluster (or to ``master``); the CompletedProcess, or the
        Popen when ``wait`` is false."""
        cmd = [str(Path(self.home) / "bin" / "spark-submit"), "--master", master or self.url]
        for k, v in {"spark.ui.showConsoleProgress": "false", **(conf or {})}.items():
            cmd += ["--conf", f"{k}={v}"]
        cmd += [str(ROOT / "jobs" / f"{job}.py"), *map(str, args)]
        if not wait:
            return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env,
                                    cwd=self.base, start_new_session=True)
        return subprocess.run(cmd, check=False, capture_output=True, text=True, env=self.env, cwd=self.base, timeout=timeout)

"""A real Spark Connect server on 127.0.0.1: pyspark's own `SparkConnectServer` class started by
spark-submit on a local master, in its own process group (stopped with it)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from spark_standalone import free_port, spark_home


class ConnectServer:
    def __init__(self, base: Path, master: str = "local[2]"):
        self.base, self.master = Path(base), master
        self.port = free_port()
        self.url = f"sc://127.0.0.1:{self.port}"
        self.proc = None
        # the server's executors run this Python (and its installed sparkad), as a cluster node's would
        self.env = dict(os.environ, SPARK_HOME=spark_home(), SPARK_LOCAL_IP="127.0.0.1", PYSPARK_PYTHON=sys.executable)
        self.env.pop("SPARK_REMOTE", None)

    def log_tail(self, n: int = 3000) -> str:
        p = self.base / "connect.log"
        return p.read_bytes()[-n:].decode(errors="replace") if p.exists() else ""

    def start(self, timeout: float = 240) -> ConnectServer:
        self.base.mkdir(parents=True, exist_ok=True)
        with open(self.base / "connect.log", "ab") as log:
            self.proc = subprocess.Popen(
                [str(Path(spark_home()) / "bin" / "spark-submit"), "--master", self.master,
                 "--class", "org.apache.spark.sql.connect.service.SparkConnectServer",
                 "--conf", f"spark.connect.grpc.binding.port={self.port}",
                 "--conf", "spark.connect.grpc.binding.address=127.0.0.1",
                 "--conf", "spark.ui.enabled=false", "spark-internal"],
                stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=self.base, start_new_session=True)
        t_end = time.time() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the Connect server exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                if time.time() > t_end:
                    raise RuntimeError(f"no Connect server on port {self.port} within {timeout:.0f} s:\n{self.log_tail()}")
                time.sleep(0.5)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(20)
        except ProcessLookupError:
            pass

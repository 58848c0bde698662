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


def get_session(app: str, master: str | None = None, conf: dict | None = None):
    """A SparkSession (spark-submit's when one exists, else a new one on ``master``)."""
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

"""The cluster fixtures, started once and torn down at the end even when a test fails; skipped only without
Java: `standalone_cluster`, a Spark standalone master and two 1-core workers on 127.0.0.1
(tests/cluster/spark_standalone.py), and `connect_server`, a Spark Connect server on local[2]
(tests/cluster/spark_connect.py)."""
import pytest
from spark_connect import ConnectServer
from spark_standalone import StandaloneCluster


def _serving(server, what: str):
    """Start ``server`` (skipped without Java), yield it, stop it."""
    from sparkad.core.errors import SparkadError
    from sparkad.core.spark import check_java
    try:
        check_java()
    except SparkadError as e:
        pytest.skip(f"{what} needs Java: {e}")
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def standalone_cluster(tmp_path_factory):
    yield from _serving(StandaloneCluster(tmp_path_factory.mktemp("standalone")), "a Spark standalone cluster")


@pytest.fixture(scope="module")
def connect_server(tmp_path_factory):
    yield from _serving(ConnectServer(tmp_path_factory.mktemp("connect")), "a Spark Connect server")

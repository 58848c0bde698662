"""The `standalone_cluster` fixture: a Spark standalone master and two 1-core workers on 127.0.0.1
(tests/cluster/spark_standalone.py), started once per session and torn down at its end even when a test
fails. Skipped only without Java."""
import pytest
from spark_standalone import StandaloneCluster


@pytest.fixture(scope="session")
def standalone_cluster(tmp_path_factory):
    from sparkad.core.errors import SparkadError
    from sparkad.core.spark import check_java
    try:
        check_java()
    except SparkadError as e:
        pytest.skip(f"a Spark standalone cluster needs Java: {e}")
    cluster = StandaloneCluster(tmp_path_factory.mktemp("standalone"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()

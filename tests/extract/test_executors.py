"""coffea's Iterative, Futures and Dask (distributed.LocalCluster) executors give identical rows;
chunking changes nothing either."""
import pandas as pd
import pytest

from rootfiles import EVENTS, events_arrays, write_root


@pytest.fixture(scope="module")
def multi_chunk_file(tmp_path_factory):
    # 4 hand-made events repeated 250 times = 1000 events, read in chunks of 300
    return write_root(tmp_path_factory.mktemp("mc") / "repeat.root", events_arrays(EVENTS), repeat=250)


def _rows(out):
    df = pd.read_parquet(out / "ds")
    return df.sort_values(list(df.columns[:4]) + ["lep_pt"]).reset_index(drop=True)


def test_executors_identical(multi_chunk_file, cms_sample, tmp_path, extract):
    files = [multi_chunk_file]
    results = {}
    for executor in ("iterative", "futures", "dask"):
        report, _ = extract(files, tmp_path / executor, feature_set="alad24", executor=executor, workers=2, chunksize=300)
        assert report["chunks"] >= 3  # several chunks, so several Parquet files to compare
        results[executor] = (_rows(tmp_path / executor), sorted(report["parquet_files"]))
    ref_rows, ref_files = results["iterative"]
    assert len(ref_rows) == 500
    for executor in ("futures", "dask"):
        rows, files_written = results[executor]
        pd.testing.assert_frame_equal(rows, ref_rows)
        assert files_written == ref_files


def test_chunking_does_not_change_rows(multi_chunk_file, tmp_path, extract):
    _, a = extract([multi_chunk_file], tmp_path / "a", chunksize=1000)
    _, b = extract([multi_chunk_file], tmp_path / "b", chunksize=77)
    pd.testing.assert_frame_equal(a, b)

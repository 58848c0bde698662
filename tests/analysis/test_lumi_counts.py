"""Per-(run, LS) counting (analysis.lumi_counts), checked against a pandas groupby of the same events."""
import numpy as np
import pandas as pd

from sparkad.analysis.lumi_counts import COUNT_COLUMNS, count_per_ls, counts_frame, counts_table, merge_counts


def _events(seed, n=5000):
    rng = np.random.default_rng(seed)
    return rng.integers(190000, 190010, n), rng.integers(1, 30, n), rng.random(n) < 0.1


def _truth(run, lumi, sel):
    df = pd.DataFrame({"run": run, "luminosityBlock": lumi, "events": 1, "selected": sel.astype(np.int64)})
    return df.groupby(["run", "luminosityBlock"], as_index=False, sort=True).sum().astype("int64")


def test_count_per_ls_equals_groupby_on_unsorted_events():
    run, lumi, sel = _events(1)
    got = counts_frame(count_per_ls(run, lumi, sel))
    pd.testing.assert_frame_equal(got, _truth(run, lumi, sel)[list(COUNT_COLUMNS)])


def test_merge_in_any_grouping_equals_counting_everything_at_once():
    run, lumi, sel = _events(2)
    whole = count_per_ls(run, lumi, sel)
    parts = [count_per_ls(run[i:i + 700], lumi[i:i + 700], sel[i:i + 700]) for i in range(0, len(run), 700)]
    np.testing.assert_array_equal(merge_counts(*parts), whole)
    np.testing.assert_array_equal(merge_counts(merge_counts(*parts[::-1][:3]), *parts[::-1][3:]), whole)
    assert merge_counts().shape == (4, 0)
    assert counts_frame(merge_counts()).dtypes.eq("int64").all()


def test_counts_table_of_a_frame_with_repeated_rows():
    df = pd.DataFrame({"run": [2, 1, 2], "luminosityBlock": [5, 3, 5], "events": [4, 1, 6], "selected": [1, 0, 2]})
    np.testing.assert_array_equal(counts_table(df), [[1, 2], [3, 5], [1, 10], [0, 3]])

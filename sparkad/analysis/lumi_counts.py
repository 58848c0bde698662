"""Events and anomalous events per (run, luminosity section), counted once.

A count table is an int64 array of shape (4, k): run, luminosityBlock, events, selected, one column
per (run, LS), sorted by run then LS. Tables of batches, tasks or files merge with ``merge_counts``
in any order and grouping (the scoring pass, the monitor and the run-period check all use these)."""
from __future__ import annotations

import numpy as np

COUNT_COLUMNS = ("run", "luminosityBlock", "events", "selected")


def merge_counts(*tables: np.ndarray) -> np.ndarray:
    """One count table from several: columns with the same (run, LS) summed. Data arrive in run / LS
    order, so the sorted case is a linear pass (no sort)."""
    arrs = [np.asarray(t, np.int64).reshape(4, -1) for t in tables]
    arr = np.concatenate(arrs, axis=1) if arrs else np.zeros((4, 0), np.int64)
    if arr.shape[1] == 0:
        return arr
    key = (arr[0] << 32) | arr[1]  # run < 2^31, lumi section < 2^32
    if np.any(key[1:] < key[:-1]):
        order = np.argsort(key, kind="stable")
        arr, key = arr[:, order], key[order]
    starts = np.concatenate([[0], np.flatnonzero(key[1:] != key[:-1]) + 1])
    return np.concatenate([arr[:2, starts], np.add.reduceat(arr[2:], starts, axis=1)]).astype(np.int64)


def count_per_ls(run, lumi, selected) -> np.ndarray:
    """The count table of one batch of events: ``selected`` is a boolean per event."""
    run = np.asarray(run, np.int64)
    return merge_counts(np.stack([run, np.asarray(lumi, np.int64), np.ones_like(run),
                                  np.asarray(selected, bool).astype(np.int64)]))


def counts_frame(table: np.ndarray):
    """A count table as a DataFrame with the columns COUNT_COLUMNS (int64)."""
    import pandas as pd

    table = np.asarray(table, np.int64).reshape(4, -1)
    return pd.DataFrame({c: table[i] for i, c in enumerate(COUNT_COLUMNS)})


def counts_table(df) -> np.ndarray:
    """The (4, k) array of a DataFrame holding COUNT_COLUMNS (rows need not be unique or sorted)."""
    return merge_counts(np.stack([df[c].to_numpy(np.int64) for c in COUNT_COLUMNS]))

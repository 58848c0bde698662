"""Disjoint shards of the HLF input for distributed training: the shares of n workers partition
every dataset, by row groups or (fewer row groups than workers) by rows."""
import pandas as pd
import pytest

from sparkad.train.cocktail import load_hlf

KEYS = ["dataset", "run", "luminosityBlock", "event"]


@pytest.mark.parametrize("n", [2, 3, 50])
def test_shards_partition_the_data(generated_hlf, n):
    full, _ = load_hlf(generated_hlf)
    parts = [load_hlf(generated_hlf, shard=(i, n))[0] for i in range(n)]
    assert sum(len(p) for p in parts) == len(full)
    keys = pd.concat([p[KEYS] for p in parts], ignore_index=True)
    assert not keys.duplicated().any()
    pd.testing.assert_frame_equal(keys.sort_values(KEYS).reset_index(drop=True),
                                  full[KEYS].sort_values(KEYS).reset_index(drop=True))
    assert load_hlf(generated_hlf, shard=(0, n))[1]["shard"] == [0, n]

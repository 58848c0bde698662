"""The one configuration merge rule (core.config.merge_config) and the JSON sanitiser."""
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sparkad.core.atomic import write_json_atomic
from sparkad.core.config import given, merge_config
from sparkad.core.jsonsafe import jsonable, records


def test_mappings_merge_recursively_other_values_replace():
    base = {"training": {"epochs": 10, "lr": 1e-3}, "models": {"alad": {"epochs": 5, "latent": 8}}, "cuts": ["a", "b"]}
    over = {"models": {"alad": {"epochs": 7}}, "cuts": ["c"]}
    out = merge_config(base, over)
    assert out == {"training": {"epochs": 10, "lr": 1e-3}, "models": {"alad": {"epochs": 7, "latent": 8}}, "cuts": ["c"]}
    assert base["models"]["alad"]["epochs"] == 5  # inputs untouched
    out["training"]["epochs"] = 0
    assert base["training"]["epochs"] == 10  # no shared sub-objects


def test_layers_apply_in_order_and_flags_left_out_override_nothing():
    flags = given({"epochs": None, "batch_size": 64})
    assert flags == {"batch_size": 64}
    out = merge_config({"epochs": 3, "batch_size": 32}, {"epochs": 4}, flags)
    assert out == {"epochs": 4, "batch_size": 64}


def test_whole_values_replace_instead_of_merging():
    base = {"histograms": {"HT": {"bins": 10, "lo": 0, "hi": 1}, "MJ": {"bins": 5, "lo": 0, "hi": 2}}}
    over = {"histograms": {"HT": {"edges": [0, 1, 3]}}}
    out = merge_config(base, over, whole=("histograms.*",))
    assert out["histograms"]["HT"] == {"edges": [0, 1, 3]}
    assert out["histograms"]["MJ"] == {"bins": 5, "lo": 0, "hi": 2}
    assert merge_config(base, over)["histograms"]["HT"] == {"bins": 10, "lo": 0, "hi": 1, "edges": [0, 1, 3]}


def test_jsonable_writes_standard_json(tmp_path):
    obj = {"a": np.float32(1.5), "b": float("nan"), "c": [np.int64(3), np.inf], "d": (1, 2), "e": {2, 1},
           "f": np.arange(3), "g": Path("/x"), "h": pd.NA, 4: np.bool_(True)}
    out = jsonable(obj)
    assert out == {"a": 1.5, "b": None, "c": [3, None], "d": [1, 2], "e": [1, 2], "f": [0, 1, 2], "g": "/x",
                   "h": None, "4": True}
    p = write_json_atomic(obj, tmp_path / "x.json")
    text = p.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == out


def test_records_of_a_frame():
    df = pd.DataFrame({"run": np.array([1, 2], np.int64), "x": [0.5, math.nan], "ok": np.array([True, False])})
    assert records(df) == [{"run": 1, "x": 0.5, "ok": True}, {"run": 2, "x": None, "ok": False}]
    assert isinstance(records(df)[0]["run"], int)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_write_json_never_emits_non_standard_tokens(tmp_path, bad):
    p = write_json_atomic({"v": bad, "nested": [{"w": bad}]}, tmp_path / "y.json")
    assert json.loads(p.read_text()) == {"v": None, "nested": [{"w": None}]}

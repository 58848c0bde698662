"""The one JSON sanitiser: what sparkad writes as JSON is standard JSON (no NaN / Infinity tokens,
which Python writes by default and most other readers reject)."""
from __future__ import annotations

import math
from pathlib import PurePath

import numpy as np


def jsonable(obj):
    """``obj`` as plain JSON types, recursively: numpy scalars and arrays as Python numbers and lists,
    tuples and sets as lists (sets sorted), paths as strings, and a non-finite float (NaN, ±inf)
    or a missing value (``pd.NA``, ``NaT``) as None. Other objects are left as they are."""
    if isinstance(obj, dict):
        return {str(k) if not isinstance(k, str) else k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return [jsonable(v) for v in sorted(obj)]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, bool) or obj is None or isinstance(obj, (int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, PurePath):
        return str(obj)
    if _is_missing(obj):
        return None
    return obj


def _is_missing(obj) -> bool:
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas is a dependency
        return False
    try:
        return obj is pd.NA or obj is pd.NaT or bool(pd.isna(obj))
    except (TypeError, ValueError):
        return False


def records(df) -> list[dict]:
    """The rows of a DataFrame as JSON-able dicts (``jsonable`` applied to each value)."""
    return [jsonable(r) for r in df.to_dict("records")]

"""Engine-free scoring kernel: an Arrow batch of HLF rows → an Arrow batch of event ids and scores.

The scoring tasks of both engines (``sparkad.score.engines.run_fragment``: a Spark task or a Dask
task reads its fragment with pyarrow inside the Python worker), the Spark UDF and in-process code all
call ``score_batch``; the
model is loaded once per Python process (``get_scorer`` caches by directory and content hash), numpy
is kept to one thread per worker, and no TensorFlow is involved (the exported numpy networks).
"""
from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa

from sparkad.core.parquet_io import ID_COLUMNS
from sparkad.model.directory import Scorer, open_scorer


def single_threaded_numpy() -> None:
    """One BLAS thread per worker: Spark and Dask already run one worker per core."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(1)
    except ImportError:
        pass


_SCORERS: dict = {}


def get_scorer(model_dir: str, files: tuple[bytes, bytes], scores=None, options: dict | None = None):
    """The model (any kind: ``open_scorer``), built once per Python process from its shipped files (keyed
    by content, by the scores it computes and by its options)."""
    key = (model_dir, hash(files[0]), len(files[1]), None if scores is None else tuple(scores),
           json.dumps(options, sort_keys=True) if options else None)
    if key not in _SCORERS:
        _SCORERS[key] = open_scorer(model_dir, files=files, scores=scores, options=options)
    return _SCORERS[key]


def output_schema(scorer: Scorer) -> pa.Schema:
    fields = [pa.field("dataset", pa.string()), pa.field("run", pa.int64()), pa.field("luminosityBlock", pa.int64()),
              pa.field("event", pa.int64()), pa.field("weight", pa.float64()), pa.field("label", pa.string())]
    fields += [pa.field(s, pa.float32()) for s in scorer.score_names]
    return pa.schema(fields)


def score_batch(batch: pa.RecordBatch, scorer: Scorer) -> tuple[pa.RecordBatch, dict]:
    """Scores of one batch: the record batch to store (event identifiers carried through, scores as
    float32) and the scorer's float64 scores, on which the thresholds are defined (the products compare
    those: a float32-rounded score can land on the other side of a threshold it equals)."""
    names = batch.schema.names
    scores = scorer.score_arrow(batch)
    schema = output_schema(scorer)  # built once per batch, not once per column
    cols = []
    for c in ID_COLUMNS:
        col = batch.column(names.index(c))
        if pa.types.is_dictionary(col.type):
            col = col.cast(pa.string())
        cols.append(col.cast(schema.field(c).type))
    cols += [pa.array(np.asarray(scores[s], np.float32)) for s in scorer.score_names]
    return pa.RecordBatch.from_arrays(cols, schema=schema), scores

"""Score HLF Parquet with a model on Spark or Dask: the engines only move Arrow batches through
``sparkad.score_batches.score_batch`` and write ``OUT/scores/dataset=<name>/*.parquet`` atomically
(staged, then renamed), followed by ``OUT/_score_report.json`` (the completion marker)."""
from __future__ import annotations

import json
import shutil
import time
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from .errors import SparkadError
from .modeldir import Scorer, read_model_files
from .parquet_io import write_json_atomic
from .score_batches import get_scorer, output_schema, score_batch, single_threaded_numpy

ENGINES = ("spark", "dask")


def hlf_datasets(hlf_dir: Path) -> dict:
    report = hlf_dir / "_report.json"
    if not report.is_file():
        raise SparkadError(f"{hlf_dir}: no _report.json — not an HLF folder, or its extraction did not complete")
    return json.loads(report.read_text())["datasets"]


def _publish(staging: Path, out: Path, report: dict) -> dict:
    final = out / "scores"
    if final.exists():
        shutil.rmtree(final)
    staging.rename(final)
    write_json_atomic(report, out / "_score_report.json")
    return report


def _spark_type(t: pa.DataType) -> str:
    return {pa.string(): "string", pa.int64(): "bigint", pa.float64(): "double", pa.float32(): "float"}[t]


def score_with_spark(hlf_dir, model_dir, out, master=None, batch_rows: int = 200_000, spark=None) -> dict:
    """mapInArrow over the HLF Parquet; Arrow batches of ``batch_rows`` rows (Spark's default is 10,000)."""
    from .spark import get_session

    t0 = time.time()
    hlf_dir, out = Path(hlf_dir), Path(out)
    datasets = hlf_datasets(hlf_dir)
    files = read_model_files(model_dir)
    scorer = Scorer(model_dir, files=files)
    spark = spark or get_session("sparkad-score", master)
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(batch_rows))
    df = spark.read.parquet(*[str(hlf_dir / name) for name in datasets])
    scorer.check_columns(df.columns, str(hlf_dir))
    schema = output_schema(scorer)
    ddl = ", ".join(f"`{f.name}` {_spark_type(f.type)}" for f in schema)
    model_path = str(model_dir)

    def score_partition(batches):
        single_threaded_numpy()
        s = get_scorer(model_path, files)  # once per Python worker, not per batch
        for b in batches:
            yield score_batch(b, s)

    needed = list(dict.fromkeys(["dataset", "run", "luminosityBlock", "event", "weight", "label", *scorer.features]))
    scored = df.select(*needed).mapInArrow(score_partition, ddl)
    out.mkdir(parents=True, exist_ok=True)
    (out / "_score_report.json").unlink(missing_ok=True)
    staging = out / f".scores-{uuid.uuid4().hex}"
    scored.write.partitionBy("dataset").parquet(str(staging))
    counts = {r["dataset"]: r["count"] for r in spark.read.parquet(str(staging)).groupBy("dataset").count().collect()}
    return _publish(staging, out, _report("spark", scorer, hlf_dir, counts, t0, batch_rows))


def _report(engine, scorer, hlf_dir, counts, t0, batch_rows):
    return {"complete": True, "engine": engine, "model": str(scorer.model_dir), "model_hash": scorer.content_hash,
            "model_kind": scorer.kind, "scores": scorer.score_names, "thresholds": scorer.thresholds,
            "hlf": str(hlf_dir), "events": counts, "total_events": sum(counts.values()), "batch_rows": batch_rows,
            "elapsed_s": round(time.time() - t0, 3)}


def _score_file(src: str, dst: str, model_dir: str, files, batch_rows: int) -> int:
    single_threaded_numpy()
    s = get_scorer(model_dir, files)
    pf = pq.ParquetFile(src)
    n = 0
    writer = None
    try:
        for b in pf.iter_batches(batch_size=batch_rows):
            sb = score_batch(b, s)
            sb = sb.drop_columns(["dataset"])  # the hive partition folder holds it, as Spark writes it
            if writer is None:
                Path(dst).parent.mkdir(parents=True, exist_ok=True)
                writer = pq.ParquetWriter(dst, sb.schema, compression="zstd")
            writer.write_batch(sb)
            n += sb.num_rows
    finally:
        if writer is not None:
            writer.close()
    return n


def score_with_dask(hlf_dir, model_dir, out, workers: int = 2, scheduler: str | None = None,
                    batch_rows: int = 200_000) -> dict:
    """One task per HLF Parquet file on a Dask cluster (a LocalCluster unless a scheduler is given)."""
    from distributed import Client, LocalCluster

    t0 = time.time()
    hlf_dir, out = Path(hlf_dir), Path(out)
    datasets = hlf_datasets(hlf_dir)
    files = read_model_files(model_dir)
    scorer = Scorer(model_dir, files=files)
    out.mkdir(parents=True, exist_ok=True)
    (out / "_score_report.json").unlink(missing_ok=True)
    staging = out / f".scores-{uuid.uuid4().hex}"
    tasks = []
    for name in datasets:
        for src in sorted((hlf_dir / name).glob("*.parquet")):
            scorer.check_columns(pq.read_schema(src).names, str(src))
            tasks.append((name, str(src), str(staging / f"dataset={name}" / src.name)))
    cluster = None if scheduler else LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                                   dashboard_address=None, silence_logs=40)
    try:
        with Client(scheduler or cluster) as client:
            futs = [client.submit(_score_file, src, dst, str(model_dir), files, batch_rows, pure=False)
                    for _, src, dst in tasks]
            done = client.gather(futs)
    finally:
        if cluster is not None:
            cluster.close()
    counts: dict = {}
    for (name, _, _), n in zip(tasks, done):
        counts[name] = counts.get(name, 0) + n
    return _publish(staging, out, _report("dask", scorer, hlf_dir, counts, t0, batch_rows))


def sparkad_score_udf(model_dir, score: str | None = None, batch_size: int = 100_000):
    """A Spark UDF for users' own queries (``predict_batch_udf``): call it on the model's feature columns,
    in ``Scorer(model_dir).features`` order. With ``score`` it returns that score (float), else a struct
    of all of the model's scores. Same numbers as the batch job (same kernel)."""
    import numpy as np
    from pyspark.ml.functions import predict_batch_udf
    from pyspark.sql import functions as F
    from pyspark.sql.types import FloatType, StructField, StructType

    files = read_model_files(model_dir)
    scorer = Scorer(model_dir, files=files)
    names, n_features = scorer.score_names, len(scorer.features)
    if score is not None and score not in names:
        raise SparkadError(f"{model_dir}: model has no score {score!r} (scores: {', '.join(names)})")
    model_path = str(model_dir)

    def make_predict_fn():
        single_threaded_numpy()
        s = get_scorer(model_path, files)

        def predict(x):
            sc = s.score(np.asarray(x, np.float64).reshape(-1, n_features))
            return sc[score] if score is not None else {k: sc[k] for k in names}

        return predict

    rtype = FloatType() if score is not None else StructType([StructField(n, FloatType()) for n in names])
    base = predict_batch_udf(make_predict_fn, return_type=rtype, batch_size=batch_size,
                             input_tensor_shapes=[[n_features]])

    def udf(*cols):
        """Columns (names or Column objects) of the model's features, in its order."""
        if len(cols) != n_features:
            raise SparkadError(f"{model_dir}: the UDF takes the model's {n_features} feature columns "
                               f"({', '.join(scorer.features)}), got {len(cols)}")
        # doubles: a float32 feature converts exactly, so the UDF sees the batch job's numbers
        return base(F.array(*[(F.col(c) if isinstance(c, str) else c).cast("double") for c in cols]))

    udf.features = list(scorer.features)
    return udf

"""Stage 4, scoring: the pass over an HLF folder (fragments, thresholds), the Spark and Dask engines,
the per-batch kernel and the Spark UDF."""

"""Shared by every stage: configuration lookup and validation, one-line errors, atomic Parquet/JSON
writing, the code version, process set-up (numba cache, ISA-L zlib, heap), the Spark session."""

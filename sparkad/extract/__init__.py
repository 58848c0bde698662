"""Stage 2, ROOT → HLF Parquet: filesets and weights, input formats, the HLF definitions (HLF.md) and
their numba kernels, selections, the coffea processor and the extraction run."""

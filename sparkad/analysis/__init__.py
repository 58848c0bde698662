"""The analysis products built from scores: mergeable aggregates, histograms, ASTF tables, the
post-processing selection and the run-period check."""

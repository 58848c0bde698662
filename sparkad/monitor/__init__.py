"""Stage 5, operations monitoring: per-run anomaly rates, alarms and Prometheus metrics."""

"""sparkad: model-independent anomaly detection on CMS collision data."""
__version__ = "0.1.0"

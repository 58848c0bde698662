"""sparkad: model-independent anomaly detection on CMS collision data."""
import os as _os

# TensorFlow's C++ INFO/WARNING lines (CPU features, CUDA absent) are noise for sparkad's users
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"

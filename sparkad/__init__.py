"""sparkad: model-independent anomaly detection on CMS collision data."""
import os as _os

from . import numba_cache as _numba_cache

# TensorFlow's C++ INFO/WARNING lines (CPU features, CUDA absent) are noise for sparkad's users
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# before any module defines a cached kernel: numba's cache keyed on the source of all of them
_numba_cache.configure()

__version__ = "0.1.0"

"""sparkad: model-independent anomaly detection on CMS collision data.

Importing sparkad does no work: entry points (the ``sparkad`` command, ``jobs/*.py``) and worker
initialisers call ``sparkad.core.runtime.setup_process()``; library users who want the same process
set-up (numba's kernel cache keyed on the source, ISA-L zlib) call it first.
"""

__version__ = "0.1.0"

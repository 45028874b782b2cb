"""Shared set-up of the annotator tests.

* Makes the helper module ``clip_files`` importable.
* Guards against a reference-count leak on ``None`` in the Qt viewer stack
  (napari 0.9.2 / vispy 0.17 / PySide6 6.12 on Python 3.11): every
  ``viewer.dims.set_current_step`` on a shown viewer drops about 50 references
  to ``None`` that were never taken (a plain ``ViewerModel`` without Qt does
  not), so after a few hundred steps the interpreter aborts at exit with
  "Fatal Python error: none_dealloc" although every test passed. The missing
  references are added to ``None``'s count once, for the life of the process
  (a list of ``None`` would be freed during finalisation, too early). ``None``
  is immortal from Python 3.12, where this does nothing.
"""

from __future__ import annotations

import ctypes
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

if platform.python_implementation() == "CPython" and sys.version_info < (3, 12):
    # ob_refcnt is the first field of every CPython object.
    ctypes.c_ssize_t.from_address(id(None)).value += 1 << 30

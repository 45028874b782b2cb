"""Shared set-up of the annotator tests.

* Makes the helper module ``clip_files`` importable.
* Qt binding: PyQt6 (the ``annotator`` extra). PySide6 6.12 on Python 3.11
  was dropped because its signal path decrements ``None``'s reference count
  about 50 times per ``dims.set_current_step`` of a shown viewer, which aborts
  the interpreter ("Fatal Python error: none_dealloc") after a few thousand
  frame steps: a crash a reviewer would meet in a long session.
  ``test_no_reference_leak_on_none`` in ``test_viewer.py`` guards it.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

"""Decode the next frames of a clip in a background thread while the viewer draws the current one.

:class:`FramePrefetcher` holds a short list of wanted frame indices (the few
after the frame just shown, in the direction the reviewer is stepping) and
one daemon thread that hands them, one at a time, to a fetch function (in
practice :meth:`annotator.frames.ClipFrames.prefetch_frame`, which decodes
into the clip's bounded cache). A new wish replaces the list: frames the
reviewer has stepped past are never decoded. The thread holds only a weak
reference to the fetch function's owner, and ends when it has been idle for
:data:`IDLE_EXIT_S` seconds, when the owner is garbage collected, or on
:meth:`FramePrefetcher.close`; the next wish starts a new one.

Memory stays bounded: at most ``depth`` frames are wanted at a time and they
go into the owner's cache, which evicts the least recently used frames.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

#: Seconds without a wish after which the background thread ends.
IDLE_EXIT_S = 5.0


class FramePrefetcher:
    """Fetch frames ahead of the shown one in one background thread.

    Parameters
    ----------
    fetch : bound method taking an int
        Called in the background thread with each wanted frame index; it
        must be thread-safe and must not raise (errors are logged and the
        frame skipped). Held through a :class:`weakref.WeakMethod`.
    n_frames : int
        Frames in the clip; wishes are clipped into ``0..n_frames - 1``.
    depth : int
        How many frames ahead of the shown one to fetch; at least 1.
    """

    def __init__(self, fetch: Callable[[int], Any], n_frames: int, depth: int) -> None:
        if depth < 1:
            raise ValueError(f"depth: expected at least 1, but got {depth}")
        self.depth = depth
        self.n_frames = n_frames
        self._fetch = weakref.WeakMethod(fetch)
        self._wanted: deque[int] = deque()
        self._busy = False
        self._closed = False
        self._last_shown: int | None = None
        self._direction = 1
        self._condition = threading.Condition()
        self._thread: threading.Thread | None = None

    def shown(self, index: int) -> None:
        """Say that frame ``index`` is being shown: fetch the next ``depth`` frames after it.

        The direction is the one of the last move (forward at first), so
        stepping backwards prefetches the frames before ``index``.
        """
        with self._condition:
            if self._closed:
                return
            if self._last_shown is not None and index != self._last_shown:
                self._direction = 1 if index > self._last_shown else -1
            self._last_shown = index
            ahead = (index + self._direction * k for k in range(1, self.depth + 1))
            self._wanted = deque(i for i in ahead if 0 <= i < self.n_frames)
            if self._wanted and self._thread is None:
                self._thread = threading.Thread(target=self._run, name="usarchive-prefetch", daemon=True)
                self._thread.start()
            self._condition.notify_all()

    @property
    def wanted(self) -> tuple[int, ...]:
        """Frame indices still waiting to be fetched, next first."""
        with self._condition:
            return tuple(self._wanted)

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until nothing is wanted or being fetched.

        Parameters
        ----------
        timeout_s : float
            Longest wait in seconds.

        Returns
        -------
        bool
            True when idle, False when ``timeout_s`` passed first.
        """
        with self._condition:
            return self._condition.wait_for(lambda: not self._wanted and not self._busy, timeout=timeout_s)

    def close(self) -> None:
        """Drop the wanted frames and end the background thread (a fetch under way finishes)."""
        with self._condition:
            self._closed = True
            self._wanted.clear()
            self._condition.notify_all()

    def _run(self) -> None:
        while True:
            with self._condition:
                self._busy = False
                self._condition.notify_all()
                if not self._wanted and not self._closed:
                    self._condition.wait(timeout=IDLE_EXIT_S)
                if self._closed or not self._wanted:
                    self._thread = None
                    return
                index = self._wanted.popleft()
                self._busy = True
            fetch = self._fetch()
            if fetch is None:  # the clip is gone
                with self._condition:
                    self._busy = False
                    self._thread = None
                    self._condition.notify_all()
                return
            try:
                fetch(index)
            except Exception:  # a prefetch failure must not kill the thread; the viewer decodes again
                logger.exception("prefetching frame %d failed", index)
            del fetch

"""Keyboard shortcuts of the review widget and the help text listing them.

:data:`SHORTCUTS` is the one table: the widget binds each key to the method
of the same ``action`` name on the viewer (napari key strings), and
:func:`help_text` renders the same table for the widget's help, so the two
cannot drift apart. Frame stepping keeps napari's own Left/Right keys.

Keys use the Alt modifier because napari binds the plain letters to layer
tools (paint, erase, select, ...) and Ctrl to its menus.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Shortcut:
    """One key binding.

    Attributes
    ----------
    key : str
        napari key string, e.g. ``"Alt-S"``; ``None`` for napari's own bindings.
    action : str or None
        Name of the :class:`~annotator.widget.ProcedureReviewWidget` method
        the key calls (without arguments); ``None`` when napari handles it.
    description : str
        What it does, for the help.
    """

    key: str
    action: str | None
    description: str


SHORTCUTS: tuple[Shortcut, ...] = (
    Shortcut("Right", None, "next frame (napari)"),
    Shortcut("Left", None, "previous frame (napari)"),
    Shortcut("Alt-Right", "next_keyframe", "next needle or target keyframe"),
    Shortcut("Alt-Left", "previous_keyframe", "previous needle or target keyframe"),
    Shortcut("Alt-N", "tool_needle", "needle tool: draw the in-plane shaft, entry to tip"),
    Shortcut("Alt-O", "tool_needle_dot", "out-of-plane needle tool: click the dot"),
    Shortcut("Alt-T", "tool_target", "target tool: click the target"),
    Shortcut("Alt-R", "tool_spread", "spread tool: paint the injectate"),
    Shortcut("Alt-D", "tool_danger", "danger tool: paint the chosen danger class"),
    Shortcut("Alt-E", "tool_erase", "erase: rub out paint, or delete the needle/target keyframe"),
    Shortcut("Alt-C", "copy_from_previous", "copy the active mark from the previous frame"),
    Shortcut(
        "Alt-K", "make_keyframe", "make the carried (interpolated or held) mark of this frame a keyframe"
    ),
    Shortcut("Alt-1", "event_needle_visible", "event: needle visible on this frame"),
    Shortcut("Alt-2", "event_target_reached", "event: target reached on this frame"),
    Shortcut("Alt-3", "event_injection_start", "event: injection start on this frame"),
    Shortcut("Alt-4", "event_injection_end", "event: injection end on this frame"),
    Shortcut("Alt-A", "accept_proposal_frame", "accept the automatic proposal on this frame"),
    Shortcut("Alt-X", "reject_proposal_frame", "reject (hide) the automatic proposal on this frame"),
    Shortcut("Alt-S", "save", "save a new version to the archive"),
)


def help_text() -> str:
    """The shortcuts as a plain-text table for the widget's help.

    Returns
    -------
    str
        One line per shortcut, ``key`` padded to a column, then its description.
    """
    width = max(len(s.key) for s in SHORTCUTS) + 2
    lines = ["Keyboard shortcuts (click the image first):"]
    lines += [f"  {s.key:<{width}}{s.description}" for s in SHORTCUTS]
    lines += [
        "",
        "Marks are stored on keyframes and carried to the other frames:",
        "  needle  interpolated between keyframes, nothing after the last;",
        "  target, danger  held from a keyframe until the next, and after the last;",
        "  spread  interpolated by shape between keyframes, held after the last.",
        "Carried marks are drawn thinner and in orange (masks fainter); the Review",
        "tab says 'keyframe', 'interpolated from 3, 7' or 'held from 3' and lists",
        "the keyframes. Editing a carried mark, or Alt-K, makes the frame a keyframe;",
        "editing a keyframe moves the carried marks after it (and, if interpolated,",
        "before it). Frames are numbered from 1 everywhere we show a number",
        "(overlay, Review tab, slider, exports), as in DICOM.",
        "Readout values are in mm, degrees and mm², computed as in the audit;",
        "on an uncalibrated clip they say 'unavailable'.",
    ]
    return "\n".join(lines)


def bind_shortcuts(viewer: Any, actions: Mapping[str, Callable[[], object]]) -> Callable[[], None]:
    """Bind every :data:`SHORTCUTS` key with an action to that action of ``actions``.

    Parameters
    ----------
    viewer : napari.Viewer
        Keys are bound on the viewer (``viewer.bind_key``), replacing earlier bindings.
    actions : mapping of str to callable
        The review widget's actions by name (the same ones its buttons run).

    Returns
    -------
    callable
        Unbinds the keys again.
    """
    keys = []
    for shortcut in SHORTCUTS:
        if shortcut.action is None:
            continue
        method = actions[shortcut.action]

        def call(_viewer: Any, method: Callable[[], object] = method) -> None:
            method()

        viewer.bind_key(shortcut.key, call, overwrite=True)
        keys.append(shortcut.key)

    def unbind() -> None:
        for key in keys:
            viewer.bind_key(key, None, overwrite=True)

    return unbind

"""Every reach into napari's (and through it vispy's) internals, in one place, gated on the tested version.

The annotator changes or reads napari's private objects in these ways, and only here:

* the viewer's Qt window and canvas: ``Window._qt_viewer``, ``QtViewer.canvas``
  and ``QtViewer.dims`` (:func:`qt_viewer`);
* the canvas's map of layers to their vispy visuals, ``VispyCanvas.layer_to_visual``
  (:func:`layer_visuals`, :func:`set_node_drawn`, used by :mod:`annotator.widget.draw_skip`, which shows and
  hides each ``VispyBaseLayer.node`` through vispy's public ``Node.visible``, as
  napari's ``_on_visible_change`` does);
* the canvas's map of viewer overlays to their visuals,
  ``VispyCanvas._viewer_overlay_to_visual``, and the ``__class__`` of the time
  overlay's ``VispyTextOverlay`` visuals, swapped for :class:`SteadyBoxTextOverlay`,
  which overrides ``VispyCanvasOverlay._on_box_change`` (:func:`steady_box`,
  undone by the callable it returns; see :mod:`annotator.overlay_box` for why);
* the time slider's Qt widget, ``QtDims.slider_widgets[axis]``, its
  ``curslice_label`` / ``totslice_label`` and its ``_set_slice_from_label``,
  ``_update_slice_labels`` and ``_update_range`` (:func:`dims_slider`,
  :func:`slider_label_handler`, :func:`refresh_slider`, used by
  :mod:`annotator.slider_numbers`).

None of these is process-wide: each changes one viewer's objects and is undone
when the clip is closed, the overlay detached or the review widget closed.

:data:`PATCHED_SOURCES` holds the SHA-256 of ``inspect.getsource`` of every
napari function or class these override or rely on;
``tests/annotator/test_napari_compat.py`` fails when one changes. On a napari
minor version other than :data:`TESTED_MINOR`, when a patch is switched off
(``napari_patches=False`` on :class:`~annotator.widget.ProcedureReviewWidget`
and :func:`~annotator.overlay.attach_time_overlay`), or when a viewer's window
lacks an expected internal, napari's stock behaviour runs: the slider numbered
from 0, every mark layer drawn in every canvas draw, the overlay's box rebuilt
on every frame step (correct, only slower), and a warning under this module's
logger says why. ``pyproject.toml`` pins the tested minor version.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import logging
import math
from collections.abc import Callable
from typing import Any

import napari

logger = logging.getLogger(__name__)

#: The napari minor version every reach-in here was written against and tested with.
TESTED_MINOR = "0.9"

#: SHA-256 of ``inspect.getsource`` of every napari function or class overridden or relied on.
PATCHED_SOURCES: dict[str, str] = {
    # overridden by SteadyBoxTextOverlay, and what it calls and reads
    "napari._vispy.overlays.base.VispyCanvasOverlay._on_box_change": (
        "5261994ea524c11a67de0ab25bbf90d246153011eaa828b0afe0a36b5a131f28"
    ),
    "napari._vispy.overlays.base.VispyBaseOverlay._should_be_visible": (
        "ec124f058c42eb3a282d3a89c742856e09d69aae2afae979dbaa8960e0f8be59"
    ),
    "napari._vispy.overlays.text.VispyTextOverlay": (
        "9350a1d000c1b407937b325c54de5c002315fb49f88c0e050bd0d87073930bca"
    ),
    "napari._vispy.overlays.text._VispyViewerTextOverlay": (
        "976a249ed7115aea2ce768395e2f50f35500512eb464a59572c0db84f792940b"
    ),
    "napari._vispy.overlays.text._VispyBaseTextOverlay._on_position_change": (
        "3e94c4005f9661585459129897773445d06ef3a30dcea325f4d8cf66e0c5454f"
    ),
    # where the canvas's layer and overlay visual maps, the window's QtViewer and its canvas and dims are made
    "napari._vispy.canvas.VispyCanvas.__init__": (
        "badfacda4fbd1da164c0a6576d72dd734c9c47dc3ae236b582d2fdc1369636f0"
    ),
    "napari._qt.qt_main_window.Window.__init__": (
        "6afbe66894689b68b5124c83c79b6edff86f52d80ebbda5081eb24b239628e3c"
    ),
    "napari._qt.qt_viewer.QtViewer.__init__": (
        "457bddfd19d2e67e42512ea2cabfc40d38a25c96152897a93d4ac0302939161c"
    ),
    "napari._qt.widgets.qt_dims.QtDims.__init__": (
        "7a7426bd4d44520b8c683b7e025219615b196cd4e3ff6230f0e327dd624f1f67"
    ),
    # a layer visual's vispy node (shown and hidden by the empty mark skip) and napari's own showing of it
    "napari._vispy.layers.base.VispyBaseLayer.__init__": (
        "fb8f339e00ee6330327dd7886e1b353ead1a490d43e2bd2153ce412716cf7a29"
    ),
    "napari._vispy.layers.base.VispyBaseLayer._on_visible_change": (
        "d7d83bbd774588d1a252fb5a5b2d461ce1c5b1b251e685cde7abfa4c23eab459"
    ),
    # the time slider's labels and napari's handlers of them
    "napari._qt.widgets.qt_dims_slider.QtDimSliderWidget.__init__": (
        "2d36c3730b1fa0df3ecbc5e198ffa935aa7e2c2d428d4c389e1a745bac8f3cfc"
    ),
    "napari._qt.widgets.qt_dims_slider.QtDimSliderWidget._set_slice_from_label": (
        "913ab73029c5b9eb38fbf323ef2883b150efddf63abe4bcb80fab88743bc8106"
    ),
    "napari._qt.widgets.qt_dims_slider.QtDimSliderWidget._update_slice_labels": (
        "59adfb3b68ce174ac6d1d5703b38a1ee84aa0ef7236c571cc1c89371e5aaeaa5"
    ),
    "napari._qt.widgets.qt_dims_slider.QtDimSliderWidget._update_range": (
        "32c5588318c131d3da7e8373a4ff3494f07f94dac4fbe7693e92ae12aeb0379f"
    ),
}

try:
    from napari._vispy.overlays.text import VispyTextOverlay
except ImportError:  # another napari layout: steady_box changes nothing
    VispyTextOverlay = None

_warned: set[str] = set()


def napari_minor() -> str:
    """The running napari's ``major.minor``."""
    return ".".join(str(napari.__version__).split(".")[:2])


def is_tested_version() -> bool:
    """Whether the running napari is the minor version the reach-ins were tested with."""
    return napari_minor() == TESTED_MINOR


def source_hash(qualified_name: str) -> str:
    """SHA-256 (hex) of the source of the napari function or class ``qualified_name``.

    Parameters
    ----------
    qualified_name : str
        Module path then attribute path, e.g.
        ``"napari._vispy.canvas.VispyCanvas.__init__"``.

    Returns
    -------
    str
        The hex digest of ``inspect.getsource`` of that object.
    """
    parts = qualified_name.split(".")
    for split in range(len(parts) - 1, 0, -1):
        try:
            target: Any = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for part in parts[split:]:
            target = getattr(target, part)
        return hashlib.sha256(inspect.getsource(target).encode()).hexdigest()
    raise ImportError(f"{qualified_name}: no importable module at its start")


def _warn_once(key: str, message: str, *args: object) -> None:
    if key not in _warned:
        _warned.add(key)
        logger.warning(message, *args)


def patches_enabled(requested: bool = True) -> bool:
    """Whether napari's internals may be reached into: requested, and the tested napari.

    Parameters
    ----------
    requested : bool, optional
        ``False`` (``napari_patches=False``) keeps napari's stock behaviour.

    Returns
    -------
    bool
        ``True`` only when requested and napari is :data:`TESTED_MINOR`.x; on
        another napari a warning (logged once) names the version and the fallback.
    """
    if not requested:
        return False
    if not is_tested_version():
        _warn_once(
            "version",
            "napari %s is not the tested %s.x: the annotator leaves napari's internals alone "
            "(slider numbered from 0, every mark layer drawn, the time overlay's box rebuilt each step); "
            "install napari %s.x",
            napari.__version__,
            TESTED_MINOR,
            TESTED_MINOR,
        )
        return False
    return True


def qt_viewer(viewer: Any) -> Any | None:
    """The viewer's private ``QtViewer``; ``None`` for a viewer without a window."""
    return getattr(getattr(viewer, "window", None), "_qt_viewer", None)


def _missing(viewer: Any, what: str) -> None:
    """Log that ``viewer`` has a window but not the internal ``what`` (a warning: napari changed)."""
    if getattr(viewer, "window", None) is None:
        logger.debug("%s: a viewer without a window, nothing to reach into", what)
        return
    _warn_once(
        what,
        "napari %s has no %s where %s.x has it: napari's stock behaviour runs instead",
        napari.__version__,
        what,
        TESTED_MINOR,
    )


def layer_visuals(viewer: Any) -> dict[Any, Any]:
    """The canvas's map of layers to their vispy layer visuals (empty without a window or on a change)."""
    visuals = getattr(getattr(qt_viewer(viewer), "canvas", None), "layer_to_visual", None)
    if not isinstance(visuals, dict):
        _missing(viewer, "VispyCanvas.layer_to_visual")
        return {}
    return visuals


def set_node_drawn(visual: Any, drawn: bool) -> None:
    """Show or hide a layer visual's vispy node (not the layer: its ``visible`` stays the reviewer's)."""
    if bool(visual.node.visible) != drawn:
        visual.node.visible = drawn


def dims_slider(viewer: Any, axis: int) -> Any | None:
    """The Qt slider widget of dims ``axis``, if it has every attribute we use; else ``None``."""
    widgets = getattr(getattr(qt_viewer(viewer), "dims", None), "slider_widgets", None)
    if widgets is None or axis >= len(widgets):
        _missing(viewer, "QtDims.slider_widgets")
        return None
    widget = widgets[axis]
    needed = (
        "curslice_label",
        "totslice_label",
        "_set_slice_from_label",
        "_update_slice_labels",
        "_update_range",
    )
    if not all(hasattr(widget, name) for name in needed):
        _missing(viewer, "QtDimSliderWidget." + "/".join(needed))
        return None
    return widget


def slider_label_handler(widget: Any) -> Callable[[], None]:
    """The handler napari connects to a number typed into the slider's label (0-based)."""
    handler: Callable[[], None] = widget._set_slice_from_label
    return handler


def refresh_slider(widget: Any) -> None:
    """Make napari write its own labels and range into the slider widget again."""
    widget._update_slice_labels()
    widget._update_range()


def _colour_key(colour: Any) -> tuple[float, ...] | None:
    return None if colour is None else tuple(float(c) for c in colour)


if VispyTextOverlay is not None:

    class SteadyBoxTextOverlay(VispyTextOverlay):  # type: ignore[misc]
        """napari's viewer text overlay visual, rebuilding its box only on a real change."""

        x_size: float
        y_size: float
        #: What the box was last drawn from (``None``: not drawn yet).
        _box_drawn_from: tuple[Any, ...] | None = None

        def _box_inputs(self) -> tuple[Any, ...]:
            """Everything napari's ``_on_box_change`` reads."""
            return (
                bool(self.overlay.box),
                bool(self._should_be_visible()),
                self.node.parent,
                tuple(float(p) for p in self.viewer.canvas.overlay_tiling.padding),
                self.x_size,
                self.y_size,
                _colour_key(self.overlay.box_color),
                _colour_key(self.viewer.canvas.background_color),
                self.node.order,
                self.node.transform,
            )

        def _on_box_change(self) -> None:
            self.x_size = float(math.ceil(self.x_size))
            self.y_size = float(math.ceil(self.y_size))
            inputs = self._box_inputs()
            if inputs == self._box_drawn_from:
                return
            super()._on_box_change()
            self._box_drawn_from = inputs

else:  # pragma: no cover - another napari layout
    SteadyBoxTextOverlay = None  # type: ignore[misc,assignment]


class SteadyBox:
    """The visuals of one text overlay made :class:`SteadyBoxTextOverlay`, and how to undo it."""

    def __init__(self, visuals: list[Any]) -> None:
        self.visuals = visuals

    @property
    def steady(self) -> int:
        """How many of the overlay's visuals keep their box (one per grid cell; 0: napari's own)."""
        return len(self.visuals)

    def restore(self) -> None:
        """Give the changed visuals napari's own class (and box drawing) back."""
        visuals, self.visuals = self.visuals, []
        for visual in visuals:
            if type(visual) is SteadyBoxTextOverlay:
                visual.__class__ = VispyTextOverlay
                try:
                    visual._on_position_change()  # napari's box again, drawn by napari's own method
                except RuntimeError:  # the canvas went with its window
                    logger.debug("text overlay visual restored without a redraw: its canvas is gone")


def steady_box(viewer: Any, overlay: Any, *, enabled: bool = True) -> SteadyBox:
    """Make the visuals of a viewer text overlay rebuild their box only on a real change.

    Parameters
    ----------
    viewer : napari.Viewer
        A viewer with a window; a viewer model without one is left as it is.
    overlay : napari.components.overlays.TextOverlay
        The viewer's text overlay, already visible (napari makes its visuals
        when it is first shown).
    enabled : bool, optional
        ``False``: leave napari's visuals alone (see :func:`patches_enabled`).

    Returns
    -------
    SteadyBox
        The changed visuals (none when napari's own behaviour runs);
        :meth:`SteadyBox.restore` undoes the change.
    """
    if VispyTextOverlay is None or not patches_enabled(enabled):
        return SteadyBox([])
    visuals = getattr(getattr(qt_viewer(viewer), "canvas", None), "_viewer_overlay_to_visual", None)
    if not isinstance(visuals, dict):
        _missing(viewer, "VispyCanvas._viewer_overlay_to_visual")
        return SteadyBox([])
    changed: list[Any] = []
    for visual in visuals.get(overlay, ()):
        if type(visual) is VispyTextOverlay:
            visual.__class__ = SteadyBoxTextOverlay
            visual._box_drawn_from = None  # drawn by napari since any earlier patch
            visual._on_position_change()
            changed.append(visual)
    if not changed:
        logger.debug("the text overlay's box is left to napari (no visual of the expected kind)")
    return SteadyBox(changed)

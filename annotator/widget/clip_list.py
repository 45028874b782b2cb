"""The list of archived clips, with filters, from which the reviewer opens one.

Filters map one to one onto :class:`archive.index.queries.Query` (patient,
level, side, technique, review status, reviewer), so the list shows what
``usarchive find`` would. The review status column is the current
reviewer's status of each clip.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from archive.archive import Archive
from archive.index.queries import InstanceRow, Query
from archive.model import ReviewStatus, Side, SpinalLevel, Technique

logger = logging.getLogger(__name__)

#: Column headers of the clip table.
COLUMNS = ("patient", "date", "levels", "side", "technique", "frames", "mm", "my status", "SOP Instance UID")
ANY = "any"


def _combo(name: str, values: list[str]) -> QComboBox:
    combo = QComboBox()
    combo.setObjectName(name)
    combo.addItems([ANY, *values])
    return combo


class ClipList(QWidget):
    """Filter fields, the table of matching clips and an Open button.

    Parameters
    ----------
    archive : Archive
        Where to look.
    reviewer : callable returning str or None
        The current reviewer (for the "my status" column).
    on_open : callable taking a SOP Instance UID
        Called when the reviewer opens a clip (double click or Open).
    """

    def __init__(
        self,
        archive: Archive,
        reviewer: Callable[[], str | None],
        on_open: Callable[[str], None],
    ) -> None:
        super().__init__()
        self.archive = archive
        self._reviewer = reviewer
        self._on_open = on_open
        self.rows: list[InstanceRow] = []

        self.patient = QLineEdit()
        self.patient.setObjectName("filter_patient")
        self.patient.setPlaceholderText("patient ID or name")
        self.level = _combo("filter_level", [level.value for level in SpinalLevel])
        self.side = _combo("filter_side", [side.value for side in Side])
        self.technique = _combo("filter_technique", [t.value for t in Technique])
        self.status = _combo("filter_status", [s.value for s in ReviewStatus])
        self.filter_reviewer = QLineEdit()
        self.filter_reviewer.setObjectName("filter_reviewer")
        self.filter_reviewer.setPlaceholderText("reviewer user name")
        form = QFormLayout()
        form.addRow("Patient", self.patient)
        pair = QHBoxLayout()
        pair.addWidget(self.level)
        pair.addWidget(self.side)
        pair.addWidget(self.technique)
        form.addRow("Level / side / technique", pair)
        second = QHBoxLayout()
        second.addWidget(self.status)
        second.addWidget(self.filter_reviewer)
        form.addRow("Review status / reviewer", second)

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setObjectName("clip_table")
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        header = self.table.horizontalHeader()
        if header is not None:
            header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.cellDoubleClicked.connect(lambda row, _col: self.open_row(row))

        self.search_button = QPushButton("Search")
        self.search_button.setObjectName("search_button")
        self.search_button.clicked.connect(self.refresh)
        self.open_button = QPushButton("Open selected clip")
        self.open_button.setObjectName("open_button")
        self.open_button.clicked.connect(self.open_selected)
        buttons = QHBoxLayout()
        buttons.addWidget(self.search_button)
        buttons.addWidget(self.open_button)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.table)
        self.patient.returnPressed.connect(self.refresh)
        self.filter_reviewer.returnPressed.connect(self.refresh)

    def query(self) -> Query:
        """The :class:`Query` the filter fields describe."""

        def chosen(combo: QComboBox) -> str | None:
            text = combo.currentText()
            return None if text == ANY else text

        level = chosen(self.level)
        side = chosen(self.side)
        technique = chosen(self.technique)
        status = chosen(self.status)
        return Query(
            patient=self.patient.text().strip() or None,
            levels=(SpinalLevel(level),) if level else (),
            side=Side(side) if side else None,
            technique=Technique(technique) if technique else None,
            review_status=ReviewStatus(status) if status else None,
            reviewer=self.filter_reviewer.text().strip() or None,
        )

    def refresh(self) -> None:
        """Run the query and fill the table."""
        self.rows = self.archive.index.find(self.query())
        me = self._reviewer()
        mine = {}
        if me:
            mine = {
                r.sop_instance_uid: r.status.value for r in self.archive.annotations.list_reviews(reviewer=me)
            }
        self.table.setRowCount(len(self.rows))
        for i, row in enumerate(self.rows):
            values = (
                row.patient_id,
                row.study_date.isoformat() if row.study_date else "",
                ",".join(row.levels),
                row.side or "",
                row.technique or "",
                str(row.frames or 1),
                "yes" if row.calibrated else "uncalibrated",
                mine.get(row.sop_instance_uid, "—"),
                row.sop_instance_uid,
            )
            for j, value in enumerate(values):
                item = QTableWidgetItem(value)
                item.setData(Qt.ItemDataRole.UserRole, row.sop_instance_uid)
                self.table.setItem(i, j, item)
        logger.debug("clip list: %d clips", len(self.rows))

    def uids(self) -> list[str]:
        """SOP Instance UIDs of the listed clips, in table order."""
        return [row.sop_instance_uid for row in self.rows]

    def open_row(self, row: int) -> None:
        """Open the clip of table row ``row``."""
        self._on_open(self.rows[row].sop_instance_uid)

    def open_selected(self) -> None:
        """Open the selected clip (nothing happens when no row is selected)."""
        model = self.table.selectionModel()
        selected = model.selectedRows() if model is not None else []
        if selected:
            self.open_row(selected[0].row())

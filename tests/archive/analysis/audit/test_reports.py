"""HTML and CSV renderings of an audit report."""

from __future__ import annotations

import base64
import csv
import html.parser
import io
import re
from pathlib import Path

import numpy as np
from audit_cases import clip, outcome, study_cohort, study_uid
from PIL import Image

from archive.analysis.audit import AuditConfig, run_audit
from archive.analysis.audit.report_csv import CSV_COLUMNS, render_csv, write_csv
from archive.analysis.audit.report_html import render_html, write_html
from archive.model import Side


class _Collector(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.images: list[str] = []

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.images.append(dict(attrs)["src"] or "")


def _parse(text: str) -> _Collector:
    parser = _Collector()
    parser.feed(text)
    return parser


def test_html_states_the_study_chi_square_and_the_pearson_note(tmp_path: Path) -> None:
    inputs, outcomes = study_cohort()
    path = write_html(run_audit(inputs, outcomes), tmp_path / "audit.html")
    page = _parse(path.read_text("utf-8"))
    text = " ".join(page.text)
    assert "χ² = 5.32" in text
    assert re.search(
        r"Pearson χ² test χ² = 5\.32 1 0\.021", " ".join(t.strip() for t in page.text if t.strip())
    )
    assert "Pearson χ² without continuity correction" in text
    assert "24/32 (75 %)" in text and "15/32 (47 %)" in text


def test_html_embeds_three_decodable_figures() -> None:
    inputs, outcomes = study_cohort()
    page = _parse(render_html(run_audit(inputs, outcomes)))
    assert len(page.images) == 3
    for src in page.images:
        prefix = "data:image/png;base64,"
        assert src.startswith(prefix)
        image = Image.open(io.BytesIO(base64.b64decode(src[len(prefix) :])))
        assert image.width > 300 and image.height > 150
        assert np.unique(np.asarray(image.convert("L"))).size > 10  # something is drawn


def test_html_escapes_text_and_lists_safety_findings() -> None:
    study = study_uid(7)
    inputs = [clip("1.2.9.1", study, danger_mm=0.5), clip("1.2.9.2", study, breach=True, danger_mm=0.0)]
    outcomes = [outcome(study, Side.RIGHT, effective=True, adverse="<script>alert(1)</script> pain")]
    text = render_html(run_audit(inputs, outcomes, AuditConfig(danger_margin_mm=1.0)))
    assert "<script>" not in text and "&lt;script&gt;" in text
    page = " ".join(_parse(text).text)
    assert "breach" in page and "near miss" in page and "1.2.9.1" in page
    assert "within 1 mm" in page


def test_csv_has_one_row_per_group_and_variable(tmp_path: Path) -> None:
    inputs, outcomes = study_cohort()
    report = run_audit(inputs, outcomes)
    path = write_csv(report, tmp_path / "audit.csv")
    rows = list(csv.DictReader(io.StringIO(path.read_text("utf-8"))))
    assert tuple(rows[0]) == CSV_COLUMNS
    per_group = len(rows) // len(report.groups)
    assert per_group * len(report.groups) == len(rows)
    eff = {(r["technique"], r["level"]): r for r in rows if r["variable"] == "effective"}
    assert eff[("OT", "all")]["count"] == "24" and eff[("OT", "all")]["n"] == "32"
    assert float(eff[("TT", "all")]["rate"]) == 15 / 32
    angle = next(r for r in rows if r["technique"] == "TT" and r["variable"] == "needle_angle_deg")
    group = report.group("TT")
    assert group is not None
    assert float(angle["mean"]) == group.metrics["needle_angle_deg"].mean
    danger = next(r for r in rows if r["variable"] == "min_tip_to_danger_mm")
    assert danger["n"] == "0" and danger["mean"] == ""
    assert render_csv(report) == path.read_bytes().decode("utf-8")

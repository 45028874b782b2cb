"""Every encoding a scanner sends, through every path: receive, import, read, HDF5, DICOM, SR, de-identify.

The corpus is built here from the phantom (with US regions, Cine timing and
an annotation) and from pydicom's own test files, converted with dcmtk
(``dcmconv``: big endian, implicit VR) and pydicom (palette with 8- and
16-bit indices and entries, segmented palette, 8-bit entries in 16-bit
words, 16-bit grey, MONOCHROME1, Cine module stripped, retired SOP classes,
single frame). Each file is sent by dcmtk ``dcmsend`` and by pynetdicom to
a running receiver, imported, read frame by frame by the annotator's
:class:`ClipFrames` and compared with pydicom's own decoding (palette
applied with :func:`pydicom.pixels.apply_color_lut` on the little-endian
original), exported to HDF5, DICOM and SR, and dciodvfy finds no error in
what we write that it does not find in the input.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pydicom
import pytest
from export_cases import SECRET_HEX, dciodvfy, run_cli
from pydicom import dcmread, dcmwrite
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.pixels.processing import apply_color_lut
from pydicom.uid import JPEG2000, UID, generate_uid
from pynetdicom import AE

from annotator.frames import ClipFrames
from archive.archive import Archive, Origin
from archive.index.queries import Query
from archive.ingest import IngestOutcome
from archive.model import ReviewStatus, SpinalLevel
from archive.phantom import generate_clip
from archive.phantom.spec import ClipSpec, Encoding
from archive.phantom.to_annotation import annotation_from_truth
from archive.research.deid.pixels import keep_mask, tissue_regions
from archive.research.deid.uids import replace_uid
from archive.research.export.hdf5_read import read_dataset
from archive.settings import ArchiveSettings
from pacs_bridge.config import BridgeSettings
from pacs_bridge.peers import AllowedPeer
from pacs_bridge.server import BridgeServer

SECRET = bytes.fromhex(SECRET_HEX)
RETIRED_US_MULTIFRAME = "1.2.840.10008.5.1.4.1.1.3"
RETIRED_US_IMAGE = "1.2.840.10008.5.1.4.1.1.6"
US_IMAGE = "1.2.840.10008.5.1.4.1.1.6.1"
_CINE = ("FrameTime", "FrameTimeVector", "CineRate", "FrameIncrementPointer", "RecommendedDisplayFrameRate")


@dataclass(frozen=True)
class Case:
    """One corpus file and how to check it."""

    name: str
    path: Path
    reference: Path  # little-endian file whose pydicom decoding is the truth
    annotated: bool  # phantom clip with regions: annotated, so reported in SR
    lossy_display: bool = False  # JPEG Baseline: the annotator decodes with Pillow (within a few levels)


def _save(ds: Dataset, path: Path) -> Path:
    dcmwrite(path, ds, enforce_file_format=True)
    return path


def _dcmconv(source: Path, target: Path, flag: str) -> Path:
    subprocess.run(["dcmconv", flag, str(source), str(target)], check=True, capture_output=True, timeout=60)
    return target


def _new_uids(ds: Dataset, tag: str) -> None:
    # Each variant is an instance of its own (import and receive judge instances by SOP Instance UID).
    ds.SOPInstanceUID = generate_uid(entropy_srcs=[str(ds.SOPInstanceUID), tag])
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID


def _palette(ds: Dataset, *, index_bits: int = 8, entry_bits: int = 16, segmented: bool = False) -> Dataset:
    """``ds`` (MONOCHROME2, 8 bit) as PALETTE COLOR: grey levels become palette indices."""
    grey = ds.pixel_array
    entries = 256 if index_bits == 8 else 4096
    indices = grey if index_bits == 8 else grey.astype(np.uint16) * 16
    top = 65535 if entry_bits == 16 else 255
    ramp = np.arange(entries, dtype=np.int64)
    luts = {
        "Red": ramp * top // (entries - 1),
        "Green": (entries - 1 - ramp) * top // (entries - 1),
        "Blue": ((ramp * 7) % entries) * top // (entries - 1),
    }
    out = copy.deepcopy(ds)
    out.set_pixel_data(
        indices, "PALETTE COLOR", index_bits if index_bits == 8 else 12, generate_instance_uid=False
    )
    for colour, values in luts.items():
        out[f"{colour}PaletteColorLookupTableDescriptor"] = pydicom.DataElement(
            0x00281101 + list(luts).index(colour), "US", [entries, 0, entry_bits]
        )
        if segmented:
            # discrete segment of the first entry, then a linear segment to the last one
            first, last = int(values[0]), int(values[-1])
            words = np.asarray([0, 1, first, 1, entries - 1, last], dtype="<u2")
            out.add_new(0x00281221 + list(luts).index(colour), "OW", words.tobytes())
        else:
            out.add_new(0x00281201 + list(luts).index(colour), "OW", values.astype("<u2").tobytes())
    return out


def _phantom(
    encoding: Encoding = Encoding.EXPLICIT_MONO, frames: int = 8, seed: int = 1
) -> tuple[Dataset, Any]:
    spec = ClipSpec(level=SpinalLevel.L4, frames=frames, rows=160, cols=200, depth_mm=60.0, encoding=encoding)
    return generate_clip(spec, seed=seed)


@dataclass(frozen=True)
class Corpus:
    cases: tuple[Case, ...]
    truths: dict[str, Any]  # SOP Instance UID -> phantom ground truth (annotated cases)
    settings: ArchiveSettings


def _build(root: Path) -> tuple[list[Case], dict[str, Any]]:
    files = root / "corpus"
    files.mkdir()
    cases: list[Case] = []
    truths: dict[str, Any] = {}

    def add(
        name: str, ds: Dataset, truth: Any = None, *, convert: str | None = None, lossy: bool = False
    ) -> None:
        _new_uids(ds, str(len(cases) + 1))
        reference = _save(ds, files / f"{name}.le.dcm")
        path = _dcmconv(reference, files / f"{name}.dcm", convert) if convert else reference
        if truth is not None:
            truths[str(ds.SOPInstanceUID)] = dataclasses.replace(
                truth, sop_instance_uid=str(ds.SOPInstanceUID)
            )
        cases.append(Case(name, path, reference, truth is not None, lossy))

    mono, truth = _phantom()
    add("mono", copy.deepcopy(mono), truth)
    add("mono-implicit", copy.deepcopy(mono), truth, convert="+ti")
    add("mono-big-endian", copy.deepcopy(mono), truth, convert="+tb")
    mono1 = copy.deepcopy(mono)
    mono1.PhotometricInterpretation = "MONOCHROME1"
    add("monochrome1", mono1, truth)
    untimed = copy.deepcopy(mono)
    for keyword in _CINE:
        if keyword in untimed:
            delattr(untimed, keyword)
    add("untimed", untimed, truth)
    retired = copy.deepcopy(mono)
    retired.SOPClassUID = retired.file_meta.MediaStorageSOPClassUID = UID(RETIRED_US_MULTIFRAME)
    add("retired-us-multiframe", retired, truth)
    sixteen = copy.deepcopy(mono)
    sixteen.set_pixel_data(
        mono.pixel_array.astype(np.uint16) * 257, "MONOCHROME2", 16, generate_instance_uid=False
    )
    add("grey-16bit", sixteen, truth)
    add("palette-8", _palette(mono), truth)
    add("palette-8-big-endian", _palette(mono), truth, convert="+tb")
    add("palette-16-index", _palette(mono, index_bits=16), truth)
    add("palette-8bit-entries", _palette(mono, entry_bits=8), truth)
    add("palette-8bit-entries-big-endian", _palette(mono, entry_bits=8), truth, convert="+tb")
    add("palette-segmented", _palette(mono, segmented=True), truth)
    rgb, rgb_truth = _phantom(Encoding.EXPLICIT_RGB, seed=2)
    add("rgb", copy.deepcopy(rgb), rgb_truth)
    add("rgb-big-endian", copy.deepcopy(rgb), rgb_truth, convert="+tb")
    jpeg, jpeg_truth = _phantom(Encoding.JPEG_BASELINE, seed=3)
    add("ybr-full-422-jpeg", jpeg, jpeg_truth, lossy=True)
    single, single_truth = _phantom(frames=1, seed=4)
    single.SOPClassUID = single.file_meta.MediaStorageSOPClassUID = UID(US_IMAGE)
    for keyword in ("NumberOfFrames", *_CINE):
        if keyword in single:
            delattr(single, keyword)
    add("single-frame", single, single_truth)
    ict = copy.deepcopy(rgb)
    ict.compress(JPEG2000, encoding_plugin="pylibjpeg", j2k_cr=[5], photometric_interpretation="YBR_ICT")
    add("ybr-ict-j2k", ict, rgb_truth)
    # pydicom's own test files: no US regions, no Cine module
    for name, source, convert in (
        ("pydicom-palette", "examples_palette.dcm", None),
        ("pydicom-palette-big-endian", "examples_palette.dcm", "+tb"),
        ("pydicom-palette-retired-us", "examples_palette.dcm", None),
        ("pydicom-ybr-full-422", "SC_ybr_full_422_uncompressed.dcm", None),
        ("pydicom-ybr-full-jpeg", "SC_rgb_jpeg_dcmtk.dcm", None),
        ("pydicom-ybr-rct-j2k", "examples_jpeg2k.dcm", None),
        ("pydicom-rgb-rle-2frame", "SC_rgb_rle_2frame.dcm", None),
        ("pydicom-grey-16bit-big-endian", "MR_small.dcm", "+tb"),
    ):
        ds = dcmread(str(get_testdata_file(source)))
        if name.endswith("retired-us"):
            ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = UID(RETIRED_US_IMAGE)
        add(name, ds, convert=convert, lossy="jpeg" in name)
    return cases, truths


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    root = tmp_path_factory.mktemp("corpus")
    cases, truths = _build(root)
    settings = ArchiveSettings(data_dir=root / "data")
    with Archive.open(settings) as archive:
        for case in cases:
            result = archive.ingest(case.path, origin=Origin(kind="file", path=str(case.path)))
            assert result.outcome is IngestOutcome.STORED, (case.name, result.reason)
            uid = str(dcmread(case.path, stop_before_pixels=True).SOPInstanceUID)
            if uid in truths:
                archive.annotations.save(annotation_from_truth(truths[uid], "rev1"), base_version=None)
                archive.annotations.set_status(uid, "rev1", ReviewStatus.SUBMITTED, by="rev1")
                archive.annotations.set_status(uid, "rev1", ReviewStatus.APPROVED, by="chief")
    return Corpus(tuple(cases), truths, settings)


def _uid(path: Path) -> str:
    return str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def _reference(case: Case, *, display: bool) -> npt.NDArray[Any]:
    """pydicom's decoding of the little-endian original, palette applied; 8 bits for display."""
    ds = dcmread(case.reference)
    frames = ds.pixel_array
    if "NumberOfFrames" not in ds:
        frames = frames[np.newaxis]
    if ds.PhotometricInterpretation == "PALETTE COLOR":
        frames = apply_color_lut(frames, ds)
        entry_bits = int(ds.RedPaletteColorLookupTableDescriptor[2])
        if entry_bits == 8:
            frames = frames.astype(np.uint8)  # 8-bit entries stored in 16-bit words
        elif display:
            frames = (frames >> 8).astype(np.uint8)
    return np.asarray(frames)


# -- receive ---------------------------------------------------------------------------------------


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[tuple[Archive, BridgeServer]]:
    settings = BridgeSettings(host="127.0.0.1", port=0, allow=(AllowedPeer("SCANNER"),), dimse_timeout_s=20.0)
    with Archive.open(ArchiveSettings(data_dir=tmp_path / "received")) as archive:
        server = BridgeServer(settings, archive)
        server.start()
        try:
            yield archive, server
        finally:
            server.stop(drain_timeout_s=5.0)


def test_every_file_is_received_by_dcmsend(corpus: Corpus, receiver: tuple[Archive, BridgeServer]) -> None:
    archive, server = receiver
    done = subprocess.run(
        ["dcmsend", "-aet", "SCANNER", "-aec", "USARCHIVE", "127.0.0.1", str(server.port)]
        + [str(c.path) for c in corpus.cases],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    missing = [c.name for c in corpus.cases if archive.index.show(_uid(c.path)) is None]
    assert missing == []


def test_every_file_is_received_by_pynetdicom(corpus: Corpus, receiver: tuple[Archive, BridgeServer]) -> None:
    archive, server = receiver
    datasets = [dcmread(c.path) for c in corpus.cases]
    ae = AE(ae_title="SCANNER")
    for pair in sorted({(str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID)) for ds in datasets}):
        ae.add_requested_context(pair[0], [pair[1]])
    assoc = ae.associate("127.0.0.1", server.port, ae_title="USARCHIVE")
    assert assoc.is_established
    try:
        statuses = {
            c.name: assoc.send_c_store(ds).Status for c, ds in zip(corpus.cases, datasets, strict=True)
        }
    finally:
        assoc.release()
    assert {name: status for name, status in statuses.items() if status != 0x0000} == {}
    assert [c.name for c in corpus.cases if archive.index.show(_uid(c.path)) is None] == []


# -- read ------------------------------------------------------------------------------------------


def test_annotator_reads_every_frame_as_pydicom_decodes_it(corpus: Corpus) -> None:
    with Archive.open(corpus.settings) as archive:
        rows = {row.sop_instance_uid: row for row in archive.index.find(Query(limit=1000))}
        stored = {c.name: archive.store.absolute(rows[_uid(c.path)].path) for c in corpus.cases}
    for case in corpus.cases:
        expected = _reference(case, display=True)
        frames = ClipFrames(stored[case.name])
        assert frames.shape == expected.shape, case.name
        for index in range(len(frames)):
            frame = frames[index].astype(np.int32)
            if case.lossy_display:
                assert np.abs(frame - expected[index]).max() <= 8, case.name
            else:
                assert np.array_equal(frame, expected[index]), (case.name, index)


# -- exports ---------------------------------------------------------------------------------------


def _export(corpus: Corpus, tmp_path: Path, fmt: str, out: str) -> tuple[int, dict[str, Any], Path]:
    target = tmp_path / out
    result = run_cli(
        corpus.settings, "export", "--format", fmt, str(target), "--status", "any", "--allow-uncalibrated"
    )
    summary: dict[str, Any] = json.loads(result.output[result.output.index("{") :])
    return result.exit_code, summary, target


def test_hdf5_holds_every_clip_as_rgb_or_grey_with_its_timing(corpus: Corpus, tmp_path: Path) -> None:
    code, summary, path = _export(corpus, tmp_path, "hdf5", "corpus.h5")
    assert summary["refused"] == [] and code == 0, summary["refused"]
    untimed = 0
    with read_dataset(path) as dataset:
        for case in corpus.cases:
            header = dcmread(case.reference, stop_before_pixels=True)
            clip = dataset.clips[replace_uid(SECRET, str(header.SOPInstanceUID))]
            expected = _reference(case, display=False)
            stored = clip.frames[()]
            assert stored.shape == expected.shape and stored.dtype == expected.dtype, case.name
            regions = tissue_regions(header, allow_uncalibrated=True)
            inside = (
                keep_mask(expected.shape[1:3], regions) if regions else np.ones(expected.shape[1:3], bool)
            )
            assert np.array_equal(stored[:, inside], expected[:, inside]), case.name
            assert not stored[:, ~inside].any(), case.name
            colour = expected.ndim == 4
            assert clip.photometric == ("RGB" if colour else str(header.PhotometricInterpretation)), case.name
            assert clip.source_photometric == str(header.PhotometricInterpretation), case.name
            timed = any(k in header for k in ("FrameTime", "FrameTimeVector", "CineRate")) or len(stored) == 1
            assert clip.timed is timed and clip.metadata["timed"] is timed, case.name
            assert bool(np.isnan(clip.frame_times_ms).all()) is not timed, case.name
            untimed += not timed
    card = path.with_name("corpus.card.md").read_text(encoding="utf-8")
    assert untimed >= 2 and f"{untimed} clip(s) have no frame timing" in card


def _errors(path: Path) -> set[str]:
    output, errors = dciodvfy(path)
    # dciodvfy names the IOD it checked (e.g. USMultiFrameImage, SCImage) on a line of its own, or
    # says it has none (retired SOP classes: it cannot check those, neither input nor output)
    named = any(line and not line.startswith(("Error", "Warning")) for line in output.splitlines())
    assert named or _NO_IOD in errors, output
    return set(errors)


_NO_IOD = "Error - Information Object Not found"


def test_dicom_export_deidentifies_every_clip_with_no_new_dciodvfy_errors(
    corpus: Corpus, tmp_path: Path
) -> None:
    code, summary, out = _export(corpus, tmp_path, "dicom", "dicom")
    assert summary["refused"] == [] and code == 0, summary["refused"]
    written = {str(dcmread(p, stop_before_pixels=True).SOPInstanceUID): p for p in out.rglob("*.dcm")}
    new_errors: dict[str, set[str]] = {}
    for case in corpus.cases:
        original = dcmread(case.path)
        path = written[replace_uid(SECRET, str(original.SOPInstanceUID))]
        exported = dcmread(path)
        assert str(exported.get("PatientName", "")) != str(original.PatientName) or not original.PatientName
        regions = tissue_regions(original, allow_uncalibrated=True)
        if regions:
            frames = exported.pixel_array
            frames = frames if "NumberOfFrames" in exported else frames[np.newaxis]
            inside = keep_mask(frames.shape[1:3], regions)
            assert not frames[:, ~inside].any(), case.name
            # cleaned pixels are stored little endian; colour as RGB, palettes keep their tables
            assert exported.file_meta.TransferSyntaxUID.is_little_endian, case.name
            if exported.PhotometricInterpretation == "PALETTE COLOR":
                frames = apply_color_lut(frames, exported)
            expected = _reference(case, display=False)
            if case.lossy_display:
                assert np.abs(frames[:, inside].astype(int) - expected[:, inside]).max() <= 8, case.name
            else:
                assert np.array_equal(frames[:, inside], expected[:, inside]), case.name
        found = _errors(path)
        assert (_NO_IOD in found) is ("retired" in case.name), case.name  # all others really checked
        added = found - _errors(case.path)
        if added:
            new_errors[case.name] = added
    assert new_errors == {}


#: dciodvfy's list of multi-frame SOP classes lacks the retired Ultrasound Multi-frame Image Storage
#: (1.2.840.10008.5.1.4.1.1.3), so it flags the Referenced Frame Number a report of such a clip
#: needs (PS3.3 C.18.3.1: required for a multi-frame image when the reference is to one frame).
_RETIRED_MULTIFRAME_FALSE_POSITIVE = (
    "Error - Shall not be present for Referenced SOP Class that is not multi-frame - "
    "attribute <ReferencedFrameNumber>"
)


def _frame_numbers(report: Dataset) -> list[Any]:
    return [elem.value for elem in report.iterall() if elem.keyword == "ReferencedFrameNumber"]


def test_sr_reports_of_every_annotated_clip_are_dciodvfy_clean(corpus: Corpus, tmp_path: Path) -> None:
    code, summary, out = _export(corpus, tmp_path, "sr", "sr")
    assert summary["refused"] == [] and code == 0, summary["refused"]
    assert summary["written"] == sum(c.annotated for c in corpus.cases)
    source_of = {_uid(c.path): c for c in corpus.cases}
    reports: dict[str, Dataset] = {}
    errors: dict[str, list[str]] = {}
    for path in out.rglob("*.dcm"):
        report = dcmread(path)
        [referenced] = {
            str(e.value) for e in report.iterall() if e.keyword == "ReferencedSOPInstanceUID"
        } & set(source_of)
        case = source_of[referenced]
        reports[case.name] = report
        found = _errors(path)
        if case.name == "retired-us-multiframe":
            found.discard(_RETIRED_MULTIFRAME_FALSE_POSITIVE)
        if found:
            errors[case.name] = sorted(found)
    assert errors == {}
    assert _frame_numbers(reports["single-frame"]) == []  # a single-frame SOP class: no frame number
    assert _frame_numbers(reports["mono"]) and _frame_numbers(reports["retired-us-multiframe"])
    retired_refs = {
        str(e.value)
        for e in reports["retired-us-multiframe"].iterall()
        if e.keyword == "ReferencedSOPClassUID"
    }
    assert RETIRED_US_MULTIFRAME in retired_refs and "1.2.840.10008.5.1.4.1.1.3.1" not in retired_refs


# -- one clip that cannot be exported ----------------------------------------------------------------


def test_one_unexportable_clip_is_named_and_the_others_are_written(tmp_path: Path) -> None:
    good, _ = _phantom(seed=7)
    bad, _ = _phantom(seed=8)
    bad.PixelData = bytes(bad.PixelData)[: len(bad.PixelData) // 3]  # truncated: import stores, decode fails
    big, _ = _phantom(seed=9)
    files = tmp_path / "in"
    files.mkdir()
    paths = [_save(good, files / "good.dcm"), _save(bad, files / "bad.dcm")]
    paths.append(_dcmconv(_save(big, files / "big.le.dcm"), files / "big.dcm", "+tb"))
    settings = ArchiveSettings(data_dir=tmp_path / "data")
    with Archive.open(settings) as archive:
        for path in paths:
            result = archive.ingest(path, origin=Origin(kind="file", path=str(path)))
            assert result.outcome is IngestOutcome.STORED, result.reason
    corpus = Corpus((), {}, settings)
    for fmt, out in (("dicom", "dicom"), ("hdf5", "out.h5")):
        code, summary, target = _export(corpus, tmp_path, fmt, out)
        assert code != 0, fmt
        assert [p["sop_instance_uid"] for p in summary["refused"]] == [str(bad.SOPInstanceUID)], fmt
        assert summary["refused"][0]["reason"], fmt
        assert summary["written"] == 2, fmt
        assert target.exists(), fmt

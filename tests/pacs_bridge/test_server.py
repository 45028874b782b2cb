"""The running receiver against real peers: dcmtk echoscu/storescu and pynetdicom."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from pathlib import Path

import pydicom
import pytest
from bridge_helpers import (
    US_MULTIFRAME,
    dataset_bytes,
    echoscu,
    make_dataset,
    storescu,
    wait_for,
    write_clip,
)
from pynetdicom import AE
from pynetdicom.sop_class import UltrasoundMultiFrameImageStorage, Verification  # type: ignore[attr-defined]

from archive.archive import Archive
from archive.errors import ConfigError
from archive.index.queries import Query
from pacs_bridge.config import BridgeSettings
from pacs_bridge.peers import AllowedPeer
from pacs_bridge.server import BridgeServer

pytestmark = pytest.mark.network


def _scu(calling: str = "SCANNER") -> AE:
    ae = AE(ae_title=calling)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 20
    return ae


def test_echoscu_answers_success(bridge: BridgeServer) -> None:
    result = echoscu(bridge.port)
    assert result.returncode == 0, result.stderr


def test_storescu_clips_arrive_byte_identical_and_classified(
    bridge: BridgeServer, archive: Archive, clips: list[Path]
) -> None:
    result = storescu(bridge.port, clips)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = {row.sop_instance_uid: row for row in archive.index.find(Query(limit=100))}
    assert len(rows) == len(clips)
    for clip in clips:
        sent = pydicom.dcmread(clip, stop_before_pixels=True)
        row = rows[str(sent.SOPInstanceUID)]
        stored = archive.store.absolute(row.path)
        # No transcoding: the stored data set bytes are exactly the sender's.
        assert dataset_bytes(stored) == dataset_bytes(clip), clip.name
        assert row.transfer_syntax == str(sent.file_meta.TransferSyntaxUID)
        level, side, technique = str(sent.SeriesDescription).split()
        assert row.levels == (level,)
        assert row.side == {"left": "left", "right": "right"}[side]
        assert row.technique == technique
    # Spool files were moved into the store: nothing is left behind.
    assert not [p for p in archive.staging_dir.rglob("*.dcm")]


def test_unknown_calling_ae_is_rejected_at_association(bridge: BridgeServer, archive: Archive) -> None:
    result = echoscu(bridge.port, calling="INTRUDER")
    assert result.returncode != 0
    assert "Calling AE Title Not Recognized" in result.stdout + result.stderr
    intruder = _scu("INTRUDER")
    intruder.add_requested_context(Verification)
    assoc = intruder.associate("127.0.0.1", bridge.port, ae_title="USARCHIVE")
    assert assoc.is_rejected
    assert (assoc.acceptor.primitive.result_source, assoc.acceptor.primitive.diagnostic) == (1, 3)


def test_wrong_called_ae_is_rejected(bridge: BridgeServer) -> None:
    ae = _scu()
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", bridge.port, ae_title="SOMEONEELSE")
    assert assoc.is_rejected
    assert assoc.acceptor.primitive.diagnostic == 7  # called AE title not recognised


def test_allowed_host_binding(
    start_bridge: Callable[..., BridgeServer], bridge_settings: BridgeSettings
) -> None:
    server = start_bridge(bridge_settings, allow=(AllowedPeer.parse("SCANNER@127.0.0.2"),))
    ae = _scu()
    ae.add_requested_context(Verification)
    from_wrong_host = ae.associate("127.0.0.1", server.port, ae_title="USARCHIVE")
    assert from_wrong_host.is_rejected
    from_right_host = ae.associate(
        "127.0.0.1", server.port, ae_title="USARCHIVE", bind_address=("127.0.0.2", 0)
    )
    assert from_right_host.is_established
    assert from_right_host.send_c_echo().Status == 0x0000
    from_right_host.release()


def test_no_allow_list_refuses_to_start(archive: Archive) -> None:
    server = BridgeServer(BridgeSettings(host="127.0.0.1", port=0), archive)
    with pytest.raises(ConfigError, match="--allow"):
        server.start()


def test_allow_any_warns_and_admits_everyone(
    start_bridge: Callable[..., BridgeServer],
    bridge_settings: BridgeSettings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="pacs_bridge"):
        server = start_bridge(bridge_settings, allow=(), allow_any=True)
    assert "access control is OFF" in caplog.text
    assert echoscu(server.port, calling="ANYONE").returncode == 0


def test_pynetdicom_store_and_log_lines(
    bridge: BridgeServer, archive: Archive, caplog: pytest.LogCaptureFixture
) -> None:
    ds = make_dataset(frames=3)
    ae = _scu()
    ae.add_requested_context(UltrasoundMultiFrameImageStorage)
    with caplog.at_level(logging.INFO, logger="pacs_bridge"):
        assoc = ae.associate("127.0.0.1", bridge.port, ae_title="USARCHIVE")
        assert assoc.is_established
        status = assoc.send_c_store(ds)
        assoc.release()
        wait_for(lambda: "released: 1 stored" in caplog.text, what="association log line")
    assert status.Status == 0x0000
    assert archive.index.show(str(ds.SOPInstanceUID)) is not None
    store_line = next(r.getMessage() for r in caplog.records if "C-STORE from" in r.getMessage())
    assert str(ds.SOPInstanceUID) in store_line
    assert "SCANNER@127.0.0.1:" in store_line
    assert "status=0x0000" in store_line and "bytes=" in store_line and "ms=" in store_line


def test_identical_duplicate_is_success_conflict_is_refused(bridge: BridgeServer, archive: Archive) -> None:
    ds = make_dataset(seed=1)
    other = make_dataset(seed=2, sop_instance_uid=str(ds.SOPInstanceUID))
    ae = _scu()
    ae.add_requested_context(US_MULTIFRAME)
    assoc = ae.associate("127.0.0.1", bridge.port, ae_title="USARCHIVE")
    first = assoc.send_c_store(ds)
    again = assoc.send_c_store(ds)
    conflict = assoc.send_c_store(other)
    assoc.release()
    assert (first.Status, again.Status) == (0x0000, 0x0000)
    assert conflict.Status == 0x0111  # keep-first policy: a different instance under a stored UID
    assert len(archive.index.find(Query(limit=10))) == 1


def test_eight_concurrent_associations(bridge: BridgeServer, archive: Archive, tmp_path: Path) -> None:
    import concurrent.futures

    files = [write_clip(tmp_path / f"c{i}.dcm", seed=i, frames=2) for i in range(8)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda f: storescu(bridge.port, [f]), files))
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
    assert len(archive.index.find(Query(limit=100))) == 8


def test_unsupported_sop_class_is_refused_at_negotiation(
    bridge: BridgeServer, caplog: pytest.LogCaptureFixture
) -> None:
    ae = _scu()
    private_class = "1.2.826.0.1.3680043.9.9999.1"  # not a storage SOP class we know
    ae.add_requested_context(private_class)
    ae.add_requested_context(Verification)
    mpeg2 = "1.2.840.10008.1.2.4.100"  # a transfer syntax we do not accept
    ae.add_requested_context(US_MULTIFRAME, [mpeg2])
    with caplog.at_level(logging.INFO, logger="pacs_bridge"):
        assoc = ae.associate("127.0.0.1", bridge.port, ae_title="USARCHIVE")
        assert assoc.is_established
        [refused] = [cx for cx in assoc.rejected_contexts if cx.abstract_syntax == private_class]
        assert refused.result == 0x03  # abstract syntax not supported
        ds = make_dataset(sop_class_uid=private_class)
        with pytest.raises(ValueError, match="No presentation context"):
            assoc.send_c_store(ds)
        assoc.release()
        wait_for(lambda: sum("refused" in r.getMessage() for r in caplog.records) >= 2, what="refusal log")
    lines = [r.getMessage() for r in caplog.records if "presentation context" in r.getMessage()]
    private_line = next(line for line in lines if private_class in line)
    assert "abstract syntax not supported" in private_line
    assert "1.2.840.10008.1.2.1 (Explicit VR Little Endian)" in private_line
    mpeg_line = next(line for line in lines if str(US_MULTIFRAME) in line)
    assert "transfer syntaxes not supported" in mpeg_line and mpeg2 in mpeg_line
    assert "Ultrasound Multi-frame Image Storage" in mpeg_line


@pytest.mark.parametrize(
    "retired_class",
    ["1.2.840.10008.5.1.4.1.1.6", "1.2.840.10008.5.1.4.1.1.3"],
    ids=["us-image", "us-multiframe"],
)
def test_retired_ultrasound_classes_are_stored(
    bridge: BridgeServer, archive: Archive, retired_class: str
) -> None:
    ae = _scu()
    ae.add_requested_context(retired_class)
    assoc = ae.associate("127.0.0.1", bridge.port, ae_title="USARCHIVE")
    assert assoc.is_established
    ds = make_dataset(sop_class_uid=retired_class)
    status = assoc.send_c_store(ds)
    assoc.release()
    assert status.Status == 0x0000
    assert archive.index.show(str(ds.SOPInstanceUID)) is not None


def test_digest_computed_while_spooling_is_the_stored_files_sha256(
    bridge: BridgeServer, archive: Archive, tmp_path: Path
) -> None:
    # The large clip (about 4.6 MB) is hashed mostly on the spool's worker thread.
    clips = [
        write_clip(tmp_path / "small.dcm", seed=3),
        write_clip(tmp_path / "large.dcm", seed=4, frames=60, rows=240, cols=320),
    ]
    result = storescu(bridge.port, clips)
    assert result.returncode == 0, result.stdout + result.stderr
    stored = list(archive.index.iter_index())
    assert len(stored) == 2
    for instance in stored:
        data = archive.store.absolute(instance.path).read_bytes()
        assert instance.sha256 == hashlib.sha256(data).hexdigest(), instance.path
        assert instance.size == len(data)

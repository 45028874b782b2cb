"""``usarchive serve`` forwards what dcmsend sends to a real Orthanc: identical, batched, through outages."""

from __future__ import annotations

import json
import re
import signal
import subprocess
from collections import Counter
from datetime import timedelta
from io import BytesIO
from pathlib import Path

import pydicom
import pytest
from bridge_helpers import run, wait_for, write_clip
from forward_helpers import (
    assert_in_orthanc_identical,
    dcmsend,
    init_archive,
    sop_uid,
    start_serve,
    stop_serve,
    usarchive,
    write_config,
)
from support.orthanc import OrthancServer

from archive.archive import Archive
from archive.config import load_configuration
from archive.forward.model import ForwardTask, TaskStatus
from archive.forward.retry import next_delay
from archive.settings import ArchiveSettings


def _tasks(config: Path, data_dir: Path) -> list[ForwardTask]:
    configuration = load_configuration(config_path=config, data_dir=data_dir)
    with Archive.open(configuration.archive, create=False) as archive:
        return archive.forward.list(limit=None)


def _all_status(config: Path, data_dir: Path, count: int, status: TaskStatus) -> bool:
    tasks = _tasks(config, data_dir)
    return len(tasks) == count and all(t.status is status for t in tasks)


BATCH_LINE = re.compile(r"forwarded batch of (\d+) to PACS .* in one association")


def test_samples_arrive_identical_one_association_per_study(
    orthanc: OrthancServer, sample_dir: Path, tmp_path: Path
) -> None:
    samples = sorted(sample_dir.glob("*.dcm"))
    studies = Counter(str(pydicom.dcmread(p, stop_before_pixels=True).StudyInstanceUID) for p in samples)
    assert len(studies) < len(samples), "the samples must have studies of several instances"
    config = write_config(
        tmp_path / "usarchive.toml", orthanc, route={"granularity": "study", "delay_s": 2.0}
    )
    data_dir = tmp_path / "data"
    init_archive(config, data_dir)
    log = tmp_path / "serve.log"
    process, port = start_serve(config, data_dir, log)
    try:
        dcmsend(port, samples)
        wait_for(
            lambda: _all_status(config, data_dir, len(samples), TaskStatus.COMPLETED),
            timeout_s=60,
            what="every task completed",
        )
    finally:
        stop_serve(process)
    assert_in_orthanc_identical(orthanc, samples)
    assert orthanc.client.statistics()["CountInstances"] == len(samples)
    batches = sorted(int(m.group(1)) for m in BATCH_LINE.finditer(log.read_text()))
    assert batches == sorted(studies.values()), log.read_text()[-3000:]


def test_outage_retries_on_the_backoff_then_delivers_each_once(
    orthanc: OrthancServer, tmp_path: Path
) -> None:
    clips = tmp_path / "clips"
    clips.mkdir()
    files = [write_clip(clips / f"c{i:02d}.dcm", frames=2, rows=16, cols=16, seed=i) for i in range(50)]
    config = write_config(
        tmp_path / "usarchive.toml",
        orthanc,
        destination={
            "retry_base_s": 1.0,
            "retry_multiplier": 2.0,
            "retry_max_delay_s": 4.0,
            "batch_size": 25,
        },
        route={"granularity": "instance"},
    )
    data_dir = tmp_path / "data"
    init_archive(config, data_dir)
    orthanc.stop()
    log = tmp_path / "serve.log"
    process, port = start_serve(config, data_dir, log)
    try:
        output = dcmsend(port, files)  # every one acknowledged while the PACS is down
        assert "with status SUCCESS" in output or "Success" in output
        wait_for(
            lambda: (
                len(_tasks(config, data_dir)) == 50 and min(t.attempts for t in _tasks(config, data_dir)) >= 3
            ),
            timeout_s=60,
            what="three failed attempts of every task",
        )
        tasks = _tasks(config, data_dir)
        policy = load_configuration(config_path=config, data_dir=data_dir).forward.destinations["PACS"].retry
        delays = set()
        for task in tasks:
            assert task.status in (TaskStatus.SCHEDULED, TaskStatus.IN_PROGRESS)
            assert "association not established (connection refused" in task.last_comment
            if task.status is TaskStatus.SCHEDULED:
                assert task.updated_at is not None
                delay = (task.scheduled_at - task.updated_at).total_seconds()
                assert delay == pytest.approx(next_delay(policy, task.attempts), abs=0.05), task
                delays.add(round(delay, 1))
        assert 4.0 in delays, f"the capped delay (retry_max_delay_s = 4) must be reached: {delays}"
        orthanc.start()
        wait_for(
            lambda: _all_status(config, data_dir, 50, TaskStatus.COMPLETED),
            timeout_s=60,
            what="all delivered",
        )
    finally:
        stop_serve(process)
    assert_in_orthanc_identical(orthanc, files)
    assert orthanc.client.statistics()["CountInstances"] == 50
    completed_lines = re.findall(r"forward task (\d+) \S+ → PACS attempt \d+: completed", log.read_text())
    assert sorted(Counter(completed_lines).values()) == [1] * 50, "each task completed exactly once"


def test_refused_syntax_fails_with_reason_then_retry_after_transcode_true(
    orthanc_factory: object, sample_dir: Path, tmp_path: Path
) -> None:
    implicit_only = orthanc_factory(  # type: ignore[operator]
        "implicit-only", config={"AcceptedTransferSyntaxes": ["1.2.840.10008.1.2"]}
    )
    sample = sample_dir / "c45_danger_mono.dcm"  # Explicit VR Little Endian
    config = write_config(tmp_path / "usarchive.toml", implicit_only, route={"granularity": "instance"})
    data_dir = tmp_path / "data"
    init_archive(config, data_dir)
    process, port = start_serve(config, data_dir, tmp_path / "serve.log")
    try:
        dcmsend(port, [sample])
        wait_for(lambda: _all_status(config, data_dir, 1, TaskStatus.FAILED), timeout_s=30, what="failed")
        (task,) = _tasks(config, data_dir)
        assert "refused transfer syntax 1.2.840.10008.1.2.1" in task.last_comment
        assert "transcode = true" in task.last_comment
        assert task.attempts == 1, "a refused syntax is permanent: no retry"
        status = run(usarchive(config, data_dir, "--json", "forward", "status"))
        assert status.returncode == 0, status.stderr
        (line,) = json.loads(status.stdout)["destinations"]
        assert line["destination"] == "PACS" and line["failed"] == 1
        assert "refused transfer syntax 1.2.840.10008.1.2.1" in line["last_error"]
        # The configuration changes (transcode = true); SIGHUP re-reads it; forward retry re-schedules.
        write_config(
            config, implicit_only, destination={"transcode": True}, route={"granularity": "instance"}
        )
        process.send_signal(signal.SIGHUP)
        wait_for(
            lambda: "destinations and routes re-read" in (tmp_path / "serve.log").read_text(), what="reload"
        )
        retried = run(usarchive(config, data_dir, "forward", "retry", "--failed"))
        assert retried.returncode == 0, retried.stderr
        wait_for(
            lambda: _all_status(config, data_dir, 1, TaskStatus.COMPLETED), timeout_s=30, what="completed"
        )
    finally:
        stop_serve(process)
    (task,) = _tasks(config, data_dir)
    assert "transcoded 1.2.840.10008.1.2.1 to 1.2.840.10008.1.2" in task.last_comment
    found = implicit_only.client.find_instance(sop_uid(sample))
    assert found is not None
    received = pydicom.dcmread(BytesIO(implicit_only.client.instance_file(found)))
    original = pydicom.dcmread(sample)
    assert received.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2"
    assert received.PixelData == original.PixelData  # lossless: the same pixels, another encoding
    assert received.SOPInstanceUID == original.SOPInstanceUID


def test_storage_commitment_completes_only_after_the_report(
    orthanc: OrthancServer, sample_dir: Path, tmp_path: Path
) -> None:
    samples = [sample_dir / "l4_single_frame_rgb.dcm", sample_dir / "l4_ot_inplane_jpeg.dcm"]
    config = write_config(
        tmp_path / "usarchive.toml",
        orthanc,
        destination={"commitment": True},
        forward={"lease_s": 4.0},
        route={"granularity": "study", "delay_s": 1.0},
    )
    data_dir = tmp_path / "data"
    init_archive(config, data_dir)
    log = tmp_path / "serve.log"
    process, port = start_serve(config, data_dir, log)
    try:
        # First Orthanc knows our AE title at a port where nobody listens: its report cannot arrive.
        orthanc.client.put_modality("USARCHIVE", "USARCHIVE", "127.0.0.1", 1)
        dcmsend(port, samples)
        wait_for(
            lambda: _all_status(config, data_dir, 2, TaskStatus.AWAITING_COMMITMENT),
            what="awaiting commitment",
        )
        assert_in_orthanc_identical(orthanc, samples)  # stored, yet not complete without the report
        wait_for(
            lambda: any(
                job.get("Type") == "StorageCommitmentScp" and job.get("State") in ("Failure", "Success")
                for job in orthanc.client.get_json("/jobs?expand")
            ),
            what="Orthanc's first report attempt",
        )
        tasks = _tasks(config, data_dir)
        assert all(t.status is not TaskStatus.COMPLETED for t in tasks), tasks
        # Now Orthanc reaches our receiver: the lease ends, the batch is sent and committed again.
        orthanc.client.put_modality("USARCHIVE", "USARCHIVE", "127.0.0.1", port)
        wait_for(
            lambda: _all_status(config, data_dir, 2, TaskStatus.COMPLETED), timeout_s=60, what="committed"
        )
    finally:
        stop_serve(process)
    tasks = _tasks(config, data_dir)
    assert all(t.last_comment == "committed by the destination" for t in tasks), tasks
    assert all(t.attempts >= 2 for t in tasks), "the first attempt's report never came"
    text = log.read_text()
    assert "storage commitment report" in text and "from ORTHANC: 2 committed, 0 failed" in text
    for task in tasks:
        assert task.completed_at is not None and task.created_at is not None
        assert task.completed_at - task.created_at > timedelta(0)


def test_sop_class_refused_fails_with_the_reason(tmp_path: Path) -> None:
    from pynetdicom import AE, evt
    from pynetdicom.sop_class import UltrasoundImageStorage  # type: ignore[attr-defined]

    scp = AE(ae_title="USONLY")
    scp.add_supported_context(UltrasoundImageStorage)
    server = scp.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, lambda e: 0)])
    assert server is not None
    try:
        clip = write_clip(tmp_path / "clip.dcm", frames=2, rows=16, cols=16)  # US Multi-frame
        config = write_config(
            tmp_path / "usarchive.toml", None, port=("USONLY", server.server_address[1]), route={}
        )
        data_dir = tmp_path / "data"
        init_archive(config, data_dir)
        process, port = start_serve(config, data_dir, tmp_path / "serve.log")
        try:
            dcmsend(port, [clip])
            wait_for(lambda: _all_status(config, data_dir, 1, TaskStatus.FAILED), what="failed")
        finally:
            stop_serve(process)
    finally:
        server.shutdown()
    (task,) = _tasks(config, data_dir)
    assert "refused SOP class 1.2.840.10008.5.1.4.1.1.3.1" in task.last_comment
    assert "uncompressed transfer syntaxes" in task.last_comment
    configuration = load_configuration(config_path=config, data_dir=data_dir)
    with Archive.open(configuration.archive, create=False) as archive:
        (summary,) = archive.forward.summary()
    assert (
        summary.failed == 1 and summary.last_error is not None and "refused SOP class" in summary.last_error
    )
    assert isinstance(configuration.archive, ArchiveSettings)


def test_forward_run_alone_sends_what_serve_received(
    orthanc: OrthancServer, sample_dir: Path, tmp_path: Path
) -> None:
    samples = sorted(sample_dir.glob("*.dcm"))[:3]
    config = write_config(tmp_path / "usarchive.toml", orthanc, forward={"enabled": False}, route={})
    data_dir = tmp_path / "data"
    init_archive(config, data_dir)
    process, port = start_serve(config, data_dir, tmp_path / "serve.log")
    try:
        dcmsend(port, samples)  # received and queued; [forward] enabled = false: serve does not send
        wait_for(lambda: len(_tasks(config, data_dir)) == 3, what="three tasks")
    finally:
        stop_serve(process)
    assert "forwarding disabled" in (tmp_path / "serve.log").read_text()
    assert all(t.status is TaskStatus.SCHEDULED for t in _tasks(config, data_dir))
    assert orthanc.client.instances() == []
    with (tmp_path / "run.log").open("w") as log:
        worker = subprocess.Popen(
            usarchive(config, data_dir, "-v", "forward", "run", "--worker-id", "alone"),
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
    try:
        wait_for(lambda: _all_status(config, data_dir, 3, TaskStatus.COMPLETED), timeout_s=30, what="sent")
        worker.send_signal(signal.SIGHUP)
        wait_for(
            lambda: "destinations and routes re-read" in (tmp_path / "run.log").read_text(), what="reload"
        )
    finally:
        worker.terminate()
        out, _ = worker.communicate(timeout=60)
    assert worker.returncode == 0, (tmp_path / "run.log").read_text()[-2000:]
    assert "forwarding as alone" in out and "stopped" in out
    assert_in_orthanc_identical(orthanc, samples)
    assert "forwarder alone started" in (tmp_path / "run.log").read_text()

"""WADO-RS against a live ``usarchive web``: files as stored, metadata, frames, bulk data, rendered, MP4.

Frames are compared with pydicom's own reading of the sample files (its
encapsulated frames for pass-through JPEG, its decoding for pixels);
multipart answers are split with the standard library's MIME parser, not ours.
"""

from __future__ import annotations

import email.parser
import email.policy
import io

import numpy as np
import pydicom
import pytest
import requests
from PIL import Image
from pydicom.encaps import generate_frames
from pydicom.pixels.utils import pixel_array
from web_served import Served, client

JPEG = "l3_tt_inplane_jpeg"
MONO = "l4_tt_inplane_mono"


def _parts(answer: requests.Response) -> list[tuple[str, bytes]]:
    """``(media type; transfer-syntax=…, body)`` of each part."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + answer.headers["content-type"].encode() + b"\r\n\r\n" + answer.content
    )
    assert message.get_content_type() == "multipart/related"
    return [
        (
            f"{part.get_content_type()}; transfer-syntax={part.get_param('transfer-syntax')}",
            part.get_payload(decode=True),
        )
        for part in message.iter_parts()
    ]


def _get(served: Served, path: str, accept: str, **headers: str) -> requests.Response:
    auth = {"Authorization": f"Bearer {served.tokens['reader']}", "Accept": accept, **headers}
    return requests.get(served.url + path, headers=auth, timeout=60)


def _path(served: Served, name: str) -> str:
    h = served.sample(name)
    return f"/studies/{h.StudyInstanceUID}/series/{h.SeriesInstanceUID}/instances/{h.SOPInstanceUID}"


@pytest.mark.parametrize(
    "accept",
    [
        'multipart/related; type="application/dicom"; transfer-syntax=*',
        "multipart/related; type=application/dicom",
    ],
)
def test_instance_is_the_stored_file_byte_for_byte(served: Served, accept: str) -> None:
    answer = _get(served, _path(served, JPEG), accept)
    assert answer.status_code == 200
    ((content_type, body),) = _parts(answer)
    assert content_type.startswith("application/dicom")
    assert "1.2.840.10008.1.2.4.50" in content_type
    assert body == served.samples[JPEG].read_bytes()


def test_study_and_series_retrieval(served: Served) -> None:
    web = client(served)
    header = served.sample("l4_ot_inplane_jpeg")
    expected = {
        served.sample(n).SOPInstanceUID
        for n in served.samples
        if served.sample(n).StudyInstanceUID == header.StudyInstanceUID
    }
    study = web.retrieve_study(header.StudyInstanceUID)
    assert {ds.SOPInstanceUID for ds in study} == expected
    series = web.retrieve_series(header.StudyInstanceUID, header.SeriesInstanceUID)
    assert {ds.SOPInstanceUID for ds in series} == expected  # one series of two instances
    a_transfer_syntax_not_stored = (
        'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2'
    )
    refused = _get(served, f"/studies/{header.StudyInstanceUID}", a_transfer_syntax_not_stored)
    assert refused.status_code == 406 and "served as stored" in refused.text


def test_metadata_is_the_header_and_read_once(served: Served) -> None:
    web = client(served)
    header = served.sample(MONO)
    context = served.server.app.state.context
    metadata = web.retrieve_series_metadata(header.StudyInstanceUID, header.SeriesInstanceUID)
    reads = context.layouts.reads
    (document,) = metadata
    expected = header.to_json_dict(bulk_data_threshold=1024, bulk_data_element_handler=lambda e: "bulk")
    for tag, value in expected.items():
        values = value.get("Value")
        if value["vr"] != "SQ" and isinstance(values, list) and len(values) > 1:
            value["Value"] = [None if v == "" else v for v in values]  # PS3.18 F.2.5: empty values are null
        if "BulkDataURI" in value:
            assert "BulkDataURI" in document[tag]
        else:
            assert document[tag] == value, tag
    assert document["7FE00010"]["BulkDataURI"].endswith(f"{_path(served, MONO)}/bulkdata/7FE00010")
    again = web.retrieve_instance_metadata(
        header.StudyInstanceUID, header.SeriesInstanceUID, header.SOPInstanceUID
    )
    study = web.retrieve_study_metadata(header.StudyInstanceUID)
    assert again == document
    assert document in study and len(study) == 3
    assert context.layouts.reads <= reads + 2  # the other two instances of the study, at most once each


def test_jpeg_frames_pass_through_unchanged(served: Served) -> None:
    ds = pydicom.dcmread(served.samples[JPEG])
    encapsulated = list(generate_frames(ds.PixelData, number_of_frames=int(ds.NumberOfFrames)))
    h = served.sample(JPEG)
    web = client(served)
    frames = web.retrieve_instance_frames(
        h.StudyInstanceUID, h.SeriesInstanceUID, h.SOPInstanceUID, [1, 5, 32], media_types=("image/jpeg",)
    )
    assert frames == [encapsulated[0], encapsulated[4], encapsulated[31]]
    answer = _get(
        served,
        _path(served, JPEG) + "/frames/2,3",
        "multipart/related; type=application/octet-stream; transfer-syntax=*",
    )
    parts = _parts(answer)
    assert [body for _, body in parts] == encapsulated[1:3]
    assert all("transfer-syntax=1.2.840.10008.1.2.4.50" in ct for ct, _ in parts)
    decoded = Image.open(io.BytesIO(frames[1]))
    assert decoded.size == (int(h.Columns), int(h.Rows))


def test_jpeg_frames_as_uncompressed_are_pydicoms_decoding(served: Served) -> None:
    h = served.sample(JPEG)
    web = client(served)
    (raw,) = web.retrieve_instance_frames(
        h.StudyInstanceUID,
        h.SeriesInstanceUID,
        h.SOPInstanceUID,
        [7],
        media_types=("application/octet-stream",),
    )
    expected = pixel_array(str(served.samples[JPEG]), index=6)
    assert raw == expected.tobytes()


def test_native_frames_are_pydicoms_pixels(served: Served) -> None:
    h = served.sample(MONO)
    web = client(served)
    numbers = [1, 2, 30]
    frames = web.retrieve_instance_frames(h.StudyInstanceUID, h.SeriesInstanceUID, h.SOPInstanceUID, numbers)
    pixels = pydicom.dcmread(served.samples[MONO]).pixel_array
    assert frames == [pixels[n - 1].tobytes() for n in numbers]
    missing = _get(
        served, _path(served, MONO) + "/frames/31", "multipart/related; type=application/octet-stream"
    )
    assert missing.status_code == 404 and "frames 1 to 30" in missing.text


def test_all_frames_in_one_request(served: Served) -> None:
    h = served.sample("l5_tt_outofplane_jpeg")
    count = int(h.NumberOfFrames)
    answer = _get(
        served,
        _path(served, "l5_tt_outofplane_jpeg") + "/frames/" + ",".join(map(str, range(1, count + 1))),
        'multipart/related; type="image/jpeg"',
    )
    ds = pydicom.dcmread(served.samples["l5_tt_outofplane_jpeg"])
    assert [body for _, body in _parts(answer)] == list(generate_frames(ds.PixelData, number_of_frames=count))


def test_bulk_data_with_ranges(served: Served) -> None:
    path = _path(served, MONO) + "/bulkdata/7FE00010"
    pixels = pydicom.dcmread(served.samples[MONO]).PixelData
    whole = _get(served, path, "application/octet-stream")
    assert whole.status_code == 200 and whole.content == pixels and whole.headers["accept-ranges"] == "bytes"
    part = _get(served, path, "application/octet-stream", Range="bytes=100-199")
    assert part.status_code == 206 and part.content == pixels[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(pixels)}"
    tail = _get(served, path, "application/octet-stream", Range="bytes=-10")
    assert tail.status_code == 206 and tail.content == pixels[-10:]
    outside = _get(served, path, "application/octet-stream", Range=f"bytes={len(pixels)}-")
    assert outside.status_code == 416


def test_rendered_and_thumbnail(served: Served) -> None:
    h = served.sample(MONO)
    png = _get(served, _path(served, MONO) + "/frames/3/rendered", "image/png")
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    image = np.asarray(Image.open(io.BytesIO(png.content)))
    frame = pydicom.dcmread(served.samples[MONO]).pixel_array[2].astype(float)
    expected = np.clip((frame - frame.min()) / (frame.max() - frame.min()) * 255.0, 0, 255).astype(np.uint8)
    assert image.shape == (int(h.Rows), int(h.Columns))
    assert np.array_equal(image, expected)
    jpeg = _get(served, _path(served, JPEG) + "/rendered", "image/jpeg")
    assert Image.open(io.BytesIO(jpeg.content)).mode == "RGB"
    thumb = _get(served, f"/studies/{h.StudyInstanceUID}/thumbnail", "image/jpeg")
    assert max(Image.open(io.BytesIO(thumb.content)).size) <= 128


def test_clip_as_mp4_encoded_once(sqlite_served: Served) -> None:
    import imageio_ffmpeg

    served = sqlite_served
    first = _get(served, _path(served, JPEG) + "/rendered", "video/mp4")
    assert first.status_code == 200 and first.headers["content-type"] == "video/mp4"
    assert first.content[4:8] == b"ftyp"
    cached = list((served.archive.settings.data_dir / "web-cache" / "mp4").glob("*.mp4"))
    assert len(cached) == 1
    mtime = cached[0].stat().st_mtime_ns
    second = _get(served, _path(served, JPEG) + "/rendered", "video/mp4")
    assert second.content == first.content and cached[0].stat().st_mtime_ns == mtime
    frames, _ = imageio_ffmpeg.count_frames_and_secs(str(cached[0]))
    assert frames == int(served.sample(JPEG).NumberOfFrames)

"""Accept negotiation with the quoted and unquoted ``type=`` real clients send; multipart splitting."""

from __future__ import annotations

import pytest

from archive.web.errors import WebRequestError
from archive.web.media import negotiate, parse_media_ranges, split_multipart


@pytest.mark.parametrize(
    "accept",
    [
        'multipart/related; type="application/octet-stream"; transfer-syntax=*',
        "multipart/related; type=application/octet-stream; transfer-syntax=*",  # OHIF's omitQuotation
        "multipart/related;type='application/octet-stream';transfer-syntax=*".replace("'", '"'),
    ],
)
def test_type_quoted_or_not(accept: str) -> None:
    choice = negotiate(accept, ["image/jpeg", "application/octet-stream"])
    assert choice.multipart and choice.part_type == "application/octet-stream"
    assert choice.transfer_syntax == "*"


def test_weights_order_and_wildcards() -> None:
    ranges = parse_media_ranges("image/png;q=0.5, image/jpeg, */*;q=0.1")
    assert [r.type for r in ranges] == ["image/jpeg", "image/png", "*/*"]
    assert negotiate("image/*", [], multipart=False, single=["image/png"]).part_type == "image/png"
    assert negotiate(None, ["application/dicom"]).part_type == "application/dicom"
    assert negotiate('multipart/related; type="image/*"', ["image/jpeg"]).part_type == "image/jpeg"


def test_nothing_acceptable_is_406_naming_the_offer() -> None:
    with pytest.raises(WebRequestError) as raised:
        negotiate('multipart/related; type="image/jp2"', ["image/jpeg", "application/octet-stream"])
    assert raised.value.status == 406 and "image/jpeg" in str(raised.value)
    with pytest.raises(WebRequestError, match=r"q=0\.\.1"):
        parse_media_ranges("image/png;q=high")


def test_split_multipart() -> None:
    body = (
        b"preamble\r\n--b\r\nContent-Type: application/dicom\r\n\r\nONE\r\n"
        b"--b\r\nContent-Type: application/dicom; transfer-syntax=1.2.840.10008.1.2\r\n\r\nTWO\r\n--b--\r\n"
    )
    parts = list(split_multipart(body, "b"))
    assert [body[p.start : p.end] for p in parts] == [b"ONE", b"TWO"]
    assert parts[1].content_type.params["transfer-syntax"] == "1.2.840.10008.1.2"
    with pytest.raises(WebRequestError, match="not closed"):
        list(split_multipart(b"--b\r\nContent-Type: application/dicom\r\n\r\nONE", "b"))

"""A seeded generator of hostile and broken DICOM conversations, for the receiver's fuzz suite.

Every case is the byte stream one connection sends (:class:`FuzzCase`): raw
garbage, mutated A-ASSOCIATE-RQs, or a valid association followed by mutated
P-DATA (flipped command sets, PDVs on unnegotiated contexts, wrong PDV
lengths, unknown PDU types, truncated or bit-flipped data sets, deeply
nested sequences). The same seed gives the same cases.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from raw_peer import associate_rq, echo_command, p_data, store_command

US_MULTIFRAME = "1.2.840.10008.5.1.4.1.1.3.1"


@dataclass(frozen=True)
class FuzzCase:
    """What one connection sends: ``prefix`` (a valid association, or nothing) then ``payload``."""

    kind: str
    associate_first: bool
    payload: bytes


def _element(group: int, element: int, vr: bytes, value: bytes) -> bytes:
    if len(value) % 2:
        value += b"\0" if vr == b"UI" else b" "
    return struct.pack("<HH2sH", group, element, vr, len(value)) + value


def uid_elements(sop_instance_uid: str) -> bytes:
    """SOP Class and Instance UID elements (Explicit VR Little Endian)."""
    return _element(0x0008, 0x0016, b"UI", US_MULTIFRAME.encode()) + _element(
        0x0008, 0x0018, b"UI", sop_instance_uid.encode()
    )


def nested_sequences(sop_instance_uid: str, depth: int) -> bytes:
    """A data set whose Content Sequence nests ``depth`` levels deep (undefined lengths)."""
    opening = struct.pack("<HH2sHL", 0x0040, 0xA730, b"SQ", 0, 0xFFFFFFFF) + struct.pack(
        "<HHL", 0xFFFE, 0xE000, 0xFFFFFFFF
    )
    closing = struct.pack("<HHL", 0xFFFE, 0xE00D, 0) + struct.pack("<HHL", 0xFFFE, 0xE0DD, 0)
    return uid_elements(sop_instance_uid) + opening * depth + closing * depth


def _flip(data: bytes, rng: random.Random, flips: int) -> bytes:
    mutated = bytearray(data)
    for _ in range(flips):
        if mutated:
            mutated[rng.randrange(len(mutated))] ^= 1 << rng.randrange(8)
    return bytes(mutated)


def generate(seed: int, count: int, clip: bytes) -> Iterator[FuzzCase]:
    """``count`` cases from ``seed``; ``clip`` is a valid data set (Explicit VR LE) to mutate."""
    rng = random.Random(seed)
    kinds = (
        "garbage",
        "associate-flipped",
        "associate-truncated",
        "associate-length",
        "pdu-type",
        "command-flipped",
        "unnegotiated-context",
        "pdv-length",
        "dataset-flipped",
        "dataset-truncated",
        "nested",
        "command-fragments",
        "echo-then-garbage",
    )
    for n in range(count):
        kind = kinds[rng.randrange(len(kinds))]
        uid = f"1.2.826.0.1.3680043.9.7133.9.{seed}.{n}"
        if kind == "garbage":
            yield FuzzCase(kind, False, rng.randbytes(rng.randrange(1, 2048)))
        elif kind == "associate-flipped":
            yield FuzzCase(kind, False, _flip(associate_rq(), rng, rng.randrange(1, 8)))
        elif kind == "associate-truncated":
            rq = associate_rq()
            yield FuzzCase(kind, False, rq[: rng.randrange(len(rq))])
        elif kind == "associate-length":
            rq_buffer = bytearray(associate_rq())
            struct.pack_into(
                ">L", rq_buffer, 2, rng.choice((0, 1, len(rq_buffer) + 100, 1 << 20, 1 << 31, 0xFFFFFFFF))
            )
            yield FuzzCase(kind, False, bytes(rq_buffer))
        elif kind == "pdu-type":
            body = rng.randbytes(rng.randrange(0, 64))
            pdu = struct.pack(">BBL", rng.randrange(256), 0, len(body)) + body
            yield FuzzCase(kind, True, pdu)
        elif kind == "command-flipped":
            command = _flip(store_command(uid), rng, rng.randrange(1, 6))
            yield FuzzCase(kind, True, p_data((1, 0x03, command)) + p_data((1, 0x02, clip)))
        elif kind == "unnegotiated-context":
            context = rng.choice((0, 2, 5, 99, 255))
            yield FuzzCase(
                kind, True, p_data((context, 0x03, store_command(uid))) + p_data((context, 0x02, clip))
            )
        elif kind == "pdv-length":
            pdu_buffer = bytearray(p_data((1, 0x03, store_command(uid))))
            struct.pack_into(">L", pdu_buffer, 6, rng.choice((0, 1, 2, len(pdu_buffer), 1 << 30)))
            yield FuzzCase(kind, True, bytes(pdu_buffer))
        elif kind == "dataset-flipped":
            data = uid_elements(uid) + _flip(clip, rng, rng.randrange(1, 20))
            yield FuzzCase(kind, True, p_data((1, 0x03, store_command(uid))) + p_data((1, 0x02, data)))
        elif kind == "dataset-truncated":
            data = uid_elements(uid) + clip[: rng.randrange(len(clip))]
            yield FuzzCase(kind, True, p_data((1, 0x03, store_command(uid))) + p_data((1, 0x02, data)))
        elif kind == "nested":
            data = nested_sequences(uid, rng.choice((10, 500, 2000, 5000)))
            yield FuzzCase(kind, True, p_data((1, 0x03, store_command(uid))) + p_data((1, 0x02, data)))
        elif kind == "command-fragments":
            fragment = rng.randbytes(1000)
            yield FuzzCase(
                kind, True, b"".join(p_data((1, 0x01, fragment)) for _ in range(rng.randrange(1, 100)))
            )
        else:
            yield FuzzCase(
                kind, True, p_data((3, 0x03, echo_command())) + rng.randbytes(rng.randrange(1, 512))
            )

"""WADO-RS ``/metadata``: DICOM JSON of stored instances from one cached header read each.

The header is read without the pixel data (:class:`~archive.web.pixeldata.LayoutCache`,
keyed by the file's SHA-256 from the index, so a replaced instance is read
again and an unchanged one never); its JSON is cached beside it. Binary
values over 1 KiB and the Pixel Data are given as ``BulkDataURI`` s
(``…/instances/{uid}/bulkdata/{tag}``, served with HTTP Range).
"""

from __future__ import annotations

import copy
import threading
from collections import OrderedDict
from typing import Any

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

from archive.web.catalog import StoredInstance
from archive.web.pixeldata import LayoutCache
from archive.web.qido import dicom_json

_PIXEL_DATA = "7FE00010"
BULK_THRESHOLD = 1024


def instance_url(base: str, instance: StoredInstance) -> str:
    """WADO-RS URL of an instance."""
    series = f"{base}/studies/{instance.study_uid}/series/{instance.series_uid}"
    return f"{series}/instances/{instance.sop_instance_uid}"


def _document(header: Dataset, url: str, has_pixels: bool) -> dict[str, Any]:
    def bulk(element: DataElement) -> str:
        return f"{url}/bulkdata/{int(element.tag):08X}"

    document = dicom_json(header, bulk_data_threshold=BULK_THRESHOLD, bulk_data_element_handler=bulk)
    if has_pixels:
        bits = int(header.get("BitsAllocated", 8))
        encapsulated = header.file_meta.TransferSyntaxUID.is_encapsulated
        vr = "OB" if encapsulated or bits <= 8 else "OW"
        document[_PIXEL_DATA] = {"vr": vr, "BulkDataURI": f"{url}/bulkdata/{_PIXEL_DATA}"}
    return dict(sorted(document.items()))


class MetadataCache:
    """DICOM JSON per instance, keyed by SHA-256 and base URL (bounded, least recently used out).

    Parameters
    ----------
    layouts : LayoutCache
        Where headers come from (read once per file).
    capacity : int
    """

    def __init__(self, layouts: LayoutCache, capacity: int = 8192) -> None:
        self._layouts = layouts
        self._capacity = capacity
        self._entries: OrderedDict[tuple[str, str], dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def metadata(self, instance: StoredInstance, base: str) -> dict[str, Any]:
        """The instance's DICOM JSON (a copy the caller may change)."""
        key = (instance.sha256, base)
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
                return copy.copy(found)
        header, layout = self._layouts.get(instance.sha256, instance.path)
        document = _document(header, instance_url(base, instance), layout is not None)
        with self._lock:
            self._entries[key] = document
            while len(self._entries) > self._capacity:
                self._entries.popitem(last=False)
        return copy.copy(document)

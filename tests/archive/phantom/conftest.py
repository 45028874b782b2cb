"""Small synthetic clips shared by the phantom tests (generated once per session)."""

from __future__ import annotations

import pytest
from phantom_cases import SPECS, Generated

from archive.phantom import GroundTruth, write_clip


@pytest.fixture(scope="session")
def generated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Generated]:
    out = tmp_path_factory.mktemp("phantom")
    clips = {}
    for seed, (name, spec) in enumerate(SPECS.items(), start=11):
        dcm, js = write_clip(spec, out, seed, stem=name)
        clips[name] = Generated(spec, dcm, GroundTruth.read(js))
    return clips

"""Shared fixtures: real models, real photos from registry packages, ../shared/data."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance import assets
from appliance.imageio import read_image

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"evaluation photos not present at {SHARED} (only in the team's workplace)")
    return SHARED


@pytest.fixture(scope="session")
def pipeline():
    from appliance.pipeline import FacePipeline

    return FacePipeline.load(threads=2)


@pytest.fixture(scope="session")
def astronaut():
    return read_image(assets.path("astronaut.png"))


@pytest.fixture(scope="session")
def group():
    return read_image(assets.path("group.jpg"))

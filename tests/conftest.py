import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

VECTORS = Path(__file__).parent / "vectors"

settings.register_profile("dev", max_examples=300, deadline=None)
settings.register_profile(
    "ci", max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


def load_vectors(name: str) -> dict:
    return json.loads((VECTORS / name).read_text())


@pytest.fixture
def vectors():
    return load_vectors


@pytest.fixture(params=["c", "python"])
def decode_path(request, monkeypatch):
    """Runs a test on the bundle decoder's C scanner (bundle/_scan.c) and on the pure-Python
    walk alone."""
    from dtn.bundle import decoder

    if request.param == "python":
        monkeypatch.setattr(decoder, "_scan", None)
    elif decoder._scan is None:
        pytest.skip("the C scanner is not built here")
    return request.param


@pytest.fixture(params=["c", "python"], scope="module")
def fast_path(request):
    """Runs a module's tests on the payload pipeline's C fast path (payload/_fastpath.c) and
    on its Python steps alone: both must give the same bytes and the same answers."""
    from dtn.payload import pipeline

    with pytest.MonkeyPatch.context() as patch:
        if request.param == "python":
            patch.setattr(pipeline, "_fastpath", None)
        elif pipeline._fastpath is None:
            pytest.skip("the C fast path is not built here")
        yield request.param

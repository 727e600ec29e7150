import pytest

from multihead_apps.bench import timing


@pytest.fixture(autouse=True)
def small_matmul(monkeypatch):
    """The roofline matmul at 256 x 256 keeps harness tests fast (the size is not tested)."""
    monkeypatch.setattr(timing, "MM_SIZE", 256)

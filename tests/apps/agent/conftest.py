import pytest


@pytest.fixture(autouse=True)
def _tiny_tensors(one_thread):
    """Every test here works on tiny tensors: run it on one thread (tests/conftest.py)."""
    yield

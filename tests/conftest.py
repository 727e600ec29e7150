import os
import re

# Nothing downloads at run time: transformers and huggingface_hub must never reach a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, settings

# Bounded, deterministic property tests: CI runs the "ci" profile (the default).
settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.register_profile("dev", deadline=None, max_examples=50)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# Under pytest-xdist (`make test` runs one worker per core) each worker gets one intra-op
# thread, so workers never contend for the same cores.
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture
def one_thread():
    """One intra-op thread for the test: for tiny tensors a second thread only adds
    contention on a shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def run_doc_examples(tmp_path, monkeypatch):
    """A function running every ```python block of a docs/ page, in order, in one namespace,
    with the working directory at tmp_path (anything an example writes lands there)."""

    def run(name: str) -> dict:
        doc = Path(__file__).resolve().parents[1] / "docs" / name
        blocks = re.findall(r"```python\n(.*?)```", doc.read_text(), re.S)
        assert len(blocks) >= 4, f"docs/{name} has only {len(blocks)} python examples"
        monkeypatch.chdir(tmp_path)
        namespace: dict = {"__name__": "docs"}
        for i, block in enumerate(blocks):
            exec(compile(block, f"<docs/{name} example {i + 1}>", "exec"), namespace)
        return namespace

    return run

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    # These tensors are tiny: a second intra-op thread only adds contention on a shared machine.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

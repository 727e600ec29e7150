import pytest
import torch

from multihead.checkpoint import save_checkpoint


def small_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))


def save_small(root, step: int = 3, **kwargs):
    """A checkpoint with weights, config and a training state (an optimizer's state dict)."""
    model = small_model()
    opt = torch.optim.AdamW(model.parameters())
    model(torch.randn(2, 4)).sum().backward()
    opt.step()
    kwargs.setdefault("state", {"optimizer": opt.state_dict(), "counter": step})
    return save_checkpoint(
        root, model=model, kind="mlp", config={"sizes": [4, 8, 2]}, step=step, **kwargs
    )


@pytest.fixture
def saved(tmp_path):
    """(root, step directory) of a checkpoint saved by :func:`save_small`."""
    root = tmp_path / "run"
    return root, save_small(root)

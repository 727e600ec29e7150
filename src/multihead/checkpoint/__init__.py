"""Checkpoints: safetensors weights, a JSON config, training state and a SHA-256 manifest,
written atomically.

Layout of a checkpoint directory ``DIR``::

    DIR/
      LATEST                 name of the newest complete step directory (replaced atomically)
      step-00000100/
        model.safetensors    weights (safetensors: loading never runs pickled code)
        config.json          {"format": 1, "kind": ..., "config": {...}, "step": ...,
                              "meta": {...}, "manifest": "manifest.json"}
        state.pt             optional: optimizer, scheduler, RNG states; loaded weights_only=True
        manifest.json        size and SHA-256 of each file above, checked when it is read

A step is written under a temporary name, made durable (fsync), and renamed into place (or, when
the step already exists, atomically exchanged with it); only then is ``LATEST`` replaced, and
old steps are renamed away before they are deleted. So a crash at any moment, kill -9 included,
leaves the previous checkpoint complete and verifiable, never a half-written one under a real
name; what the crash left is removed by the next save or by :func:`remove_stale_temporaries`,
never while another process is still writing it (see :mod:`multihead.checkpoint.temporaries`).
Files and directories get the umask's permissions, so a group can share checkpoints.

Every read goes through :func:`load_checkpoint` and :class:`Checkpoint`; damage, a missing file,
a pickle where safetensors belongs or a training state that would run code each raise one
:class:`CheckpointError` naming the file and what is wrong.

Example:
    >>> import tempfile, torch
    >>> from multihead.checkpoint import save_checkpoint, load_checkpoint
    >>> net = torch.nn.Linear(3, 2)
    >>> d = tempfile.mkdtemp()
    >>> _ = save_checkpoint(d, model=net, kind="linear", config={"in": 3, "out": 2}, step=7)
    >>> ckpt = load_checkpoint(d)
    >>> ckpt.kind, ckpt.config, ckpt.step
    ('linear', {'in': 3, 'out': 2}, 7)
    >>> sorted(ckpt.manifest)
    ['config.json', 'model.safetensors']
    >>> ckpt.load_into(torch.nn.Linear(3, 2))   # the weights' SHA-256 is checked first
"""

from multihead.checkpoint.errors import (
    CheckpointError,
    CheckpointNotFoundError,
    UnverifiedCheckpointWarning,
)
from multihead.checkpoint.files import prepare_output_dir
from multihead.checkpoint.layout import CONFIG, FORMAT_VERSION, LATEST, MANIFEST, STATE, WEIGHTS
from multihead.checkpoint.manifest import write_manifest
from multihead.checkpoint.rng import rng_state, set_rng_state
from multihead.checkpoint.store import (
    Checkpoint,
    load_checkpoint,
    resolve_step_dir,
    save_checkpoint,
)
from multihead.checkpoint.temporaries import remove_stale_temporaries

__all__ = [
    "CONFIG",
    "FORMAT_VERSION",
    "LATEST",
    "MANIFEST",
    "STATE",
    "WEIGHTS",
    "Checkpoint",
    "CheckpointError",
    "CheckpointNotFoundError",
    "UnverifiedCheckpointWarning",
    "load_checkpoint",
    "prepare_output_dir",
    "remove_stale_temporaries",
    "resolve_step_dir",
    "rng_state",
    "save_checkpoint",
    "set_rng_state",
    "write_manifest",
]

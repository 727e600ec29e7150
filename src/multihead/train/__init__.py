"""One training loop for a single process and for ``torchrun --nproc_per_node N`` (DDP).

Legend: B global batch (sequences per optimizer step, over all processes and accumulation
steps), T sequence length, V vocabulary size.

What makes runs reproducible and resumable:

- The batch of step ``s`` is drawn from a generator seeded by ``(seed, s)``: the data do not
  depend on how many steps ran before in this process, and every process draws the same global
  batch and takes its own rows. A resumed run therefore sees exactly the batches the
  uninterrupted run would have, and N processes see the rows one process would
  (:mod:`~multihead.train.data`).
- The loss of a micro-batch is its summed token loss divided by the number of scored tokens in
  the whole global batch, so gradients add up to the same mean whatever the split into
  processes and accumulation steps (:func:`~multihead.train.loop.train_step`).
- Checkpoints hold weights (safetensors), both configs (JSON), the optimizer state and every
  process's RNG state (``torch.load(weights_only=True)``), written atomically
  (:mod:`~multihead.train.state`).

Optimizer: AdamW (Loshchilov and Hutter 2019), or Muon on the blocks' matrices with AdamW on
the rest (:mod:`multihead.optim`); weight decay on matrices and embeddings only; linear warmup
then cosine (Loshchilov and Hutter 2017, SGDR) or linear decay to ``min_lr``
(:mod:`~multihead.train.schedule`); gradient clipping by global norm; optional bf16 autocast.
A non-finite loss or gradient norm stops the run at that step with :class:`NonFiniteError`
(or is skipped, within ``skip_nonfinite``), and non-finite weights are never saved
(:mod:`~multihead.train.nonfinite`).

The parts: :mod:`~multihead.train.config` (:class:`TrainConfig`),
:mod:`~multihead.train.presets`, :mod:`~multihead.train.world` (processes and collectives),
:mod:`~multihead.train.data`, :mod:`~multihead.train.evaluate` (next-token scores over
batches), :mod:`~multihead.train.clock` (training time without evaluation and checkpoint
pauses, for ``time_limit``), :mod:`~multihead.train.log` (``log.jsonl``),
:mod:`~multihead.train.state` (checkpoint and resume), :mod:`~multihead.train.nonfinite`
(divergence) and :mod:`~multihead.train.loop`.

Example:
    >>> import tempfile
    >>> from multihead.models import DecoderConfig
    >>> from multihead.train import TrainConfig, train
    >>> model_cfg = DecoderConfig(vocab_size=12, max_seq_len=16, d_model=32, num_layers=1,
    ...                           num_heads=2)
    >>> cfg = TrainConfig(task="copy", steps=3, batch_size=4, seq_len=15, eval_every=3)
    >>> result = train(model_cfg, cfg, out=tempfile.mkdtemp(), progress=False)
    >>> len(result["losses"])
    3
"""

from multihead.train.config import RESUMABLE_CHANGES, SCHEDULES, TrainConfig
from multihead.train.evaluate import Scores, score_batches
from multihead.train.log import LOG
from multihead.train.loop import train
from multihead.train.nonfinite import NonFiniteError
from multihead.train.presets import PRESETS, preset
from multihead.train.schedule import drophead_at, lr_at
from multihead.train.state import check_resume_configs

__all__ = [
    "LOG",
    "PRESETS",
    "RESUMABLE_CHANGES",
    "SCHEDULES",
    "NonFiniteError",
    "Scores",
    "TrainConfig",
    "check_resume_configs",
    "drophead_at",
    "lr_at",
    "preset",
    "score_batches",
    "train",
]

"""What a run trains and evaluates on, behind one interface: the global batch of a step and
the evaluation batches."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from multihead.data import ByteCorpus, SyntheticTask
from multihead.models import DecoderConfig
from multihead.train.config import TrainConfig


class TrainData:
    """A byte-level corpus (``task="text"``) or a synthetic task.

    The batch of step ``s`` comes from a generator seeded by ``(seed, s)``: it does not depend
    on how many steps ran before in this process, so a resumed run sees exactly the batches of
    the uninterrupted one, and every process draws the same global batch and takes its rows.
    """

    def __init__(self, config: TrainConfig, model_config: DecoderConfig) -> None:
        self.config = config
        self.corpus: ByteCorpus | None = None
        self.task: SyntheticTask | None = None
        if config.task != "text":
            self.task = SyntheticTask(
                config.task, vocab_size=model_config.vocab_size, seq_len=config.seq_len
            )
            return
        if model_config.vocab_size < 256:
            raise ValueError(
                f"task 'text' is byte-level and needs vocab_size >= 256, got "
                f"vocab_size={model_config.vocab_size}"
            )
        self.corpus = ByteCorpus.from_paths(config.data, val_fraction=config.val_fraction)
        for split in ("train", "val"):
            n = len(self.corpus.split(split))
            if n < config.seq_len + 1:
                raise ValueError(
                    f"the {split} split of corpus {self.corpus.source} has {n} bytes, "
                    f"fewer than seq_len + 1 = {config.seq_len + 1}"
                )

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The global batch of ``step``, inputs and targets ``(B, T)``: the same in every
        process and run."""
        g = torch.Generator().manual_seed(self.config.seed * 1_000_003 + step)
        b, t = self.config.batch_size, self.config.seq_len
        if self.corpus is not None:
            return self.corpus.batch("train", batch_size=b, seq_len=t, generator=g)
        return self.task.batch("train", batch_size=b, generator=g)

    def eval_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Validation batches ``(b, T)``: the same ones at every evaluation."""
        c = self.config
        if self.corpus is not None:
            yield from self.corpus.windows(
                "val", batch_size=c.batch_size, seq_len=c.seq_len, max_tokens=c.eval_tokens or None
            )
            return
        g = torch.Generator().manual_seed(c.seed * 1_000_003 + 2**40)  # disjoint from training
        n = max(1, (c.eval_tokens or 65536) // (c.batch_size * c.seq_len))
        for _ in range(n):
            yield self.task.batch("val", batch_size=c.batch_size, generator=g)

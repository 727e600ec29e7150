"""The trading policy: three action heads and a value baseline on one shared MLP trunk.

Heads (a :class:`~multihead.multitask.MultiTaskNetwork`):

* ``side``: ``Classification(2)``: short or long;
* ``leverage``: ``Binned(leverage_bins)`` over the env's leverage grid;
* ``risk``: ``Binned(risk_bins)`` over the env's drawdown-tolerance grid;
* ``value``: ``Regression()``: the state value used as REINFORCE's baseline (not an action).

The action is one sample (or the mode) from each action head; its log-probability is the sum of
the heads' log-probabilities, as the heads are independent given the trunk's features.

Legend: B batch of observations, D observation size, A = 3 action components.

Example:
    >>> import torch
    >>> from multihead_apps.agent.env import EnvConfig
    >>> policy = TradingPolicy(env_config=EnvConfig(), hidden=(32,))
    >>> step = policy.act(torch.zeros(4, EnvConfig().obs_dim), greedy=True)
    >>> step.actions.shape, step.log_prob.shape, step.value.shape
    (torch.Size([4, 3]), torch.Size([4]), torch.Size([4]))
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from multihead.checkpoint import load_checkpoint, save_checkpoint
from multihead.multitask import (
    MLP,
    Binned,
    Classification,
    HeadOutputs,
    MultiTaskNetwork,
    Regression,
)
from multihead_apps.agent.env import EnvConfig

ACTION_HEADS: tuple[str, ...] = ("side", "leverage", "risk")
VALUE_HEAD = "value"
KIND = "trading_agent"


def agent_heads(env_config: EnvConfig) -> dict[str, Any]:
    """The head specs for an env: the binned grids are exactly the env's action grids."""
    return {
        "side": Classification(2),
        "leverage": Binned(env_config.leverage_bins, *env_config.leverage_range),
        "risk": Binned(env_config.risk_bins, *env_config.risk_range),
        VALUE_HEAD: Regression(),
    }


@dataclass
class PolicyStep:
    """One decision for a batch: ``actions`` ``(B, 3)`` long (side, leverage bin, risk bin),
    ``log_prob`` ``(B,)``, ``value`` ``(B,)``."""

    actions: torch.Tensor
    log_prob: torch.Tensor
    value: torch.Tensor


class TradingPolicy(nn.Module):
    """A 3-head policy (plus value baseline) for :class:`~multihead_apps.agent.env.TradingEnv`.

    Args:
        env_config: the environment it acts in (observation size, action grids).
        hidden: widths of the MLP trunk.
        network: an existing network with the right heads (e.g. loaded); built if None.
    """

    def __init__(
        self,
        *,
        env_config: EnvConfig,
        hidden: tuple[int, ...] = (64, 64),
        network: MultiTaskNetwork | None = None,
    ) -> None:
        super().__init__()
        self.env_config = env_config
        if network is None:
            # tanh keeps the features bounded, which steadies early policy-gradient updates.
            trunk = MLP(in_features=env_config.obs_dim, hidden=hidden, activation="tanh")
            network = MultiTaskNetwork(trunk, heads=agent_heads(env_config))
        missing = [h for h in (*ACTION_HEADS, VALUE_HEAD) if h not in network.specs]
        if missing:
            raise ValueError(f"network lacks heads {missing}; a trading policy needs them")
        self.network = network

    def forward(self, obs: torch.Tensor) -> HeadOutputs:
        """Per-head outputs for observations ``(B, D)``."""
        return self.network(obs)

    def log_prob(
        self, outputs: HeadOutputs, actions: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Joint log-probability ``(B,)`` of ``actions`` ``(B, 3)`` and each head's entropy
        ``(B,)``."""
        total = torch.zeros(actions.shape[0], device=actions.device)
        entropy = {}
        for i, name in enumerate(ACTION_HEADS):
            logp = F.log_softmax(outputs[name].float(), dim=-1)  # (B, bins)
            total = total + logp.gather(1, actions[:, i : i + 1]).squeeze(1)
            entropy[name] = -(logp.exp() * logp).sum(-1)
        return total, entropy

    @torch.no_grad()
    def act(
        self,
        obs: torch.Tensor,
        *,
        greedy: bool = False,
        generator: torch.Generator | None = None,
    ) -> PolicyStep:
        """Sample (or, with ``greedy``, take the mode of) each action head."""
        outputs = self(obs)
        columns = []
        for name in ACTION_HEADS:
            logits = outputs[name].float()
            if greedy:
                columns.append(logits.argmax(-1))
            else:
                probs = F.softmax(logits, dim=-1)
                columns.append(torch.multinomial(probs, 1, generator=generator).squeeze(1))
        actions = torch.stack(columns, dim=1)  # (B, 3)
        log_prob, _ = self.log_prob(outputs, actions)
        return PolicyStep(actions=actions, log_prob=log_prob, value=outputs[VALUE_HEAD])

    # --- checkpoints -------------------------------------------------------------------
    def save(
        self,
        directory: str | os.PathLike,
        *,
        step: int = 0,
        trainer: dict[str, Any] | None = None,
        state: dict[str, Any] | None = None,
        meta: dict[str, Any] | None = None,
    ) -> Path:
        """Save the network, the env config and the trainer config (kind ``trading_agent``)."""
        config = {
            "network": self.network.to_config(),
            "env": self.env_config.to_dict(),
            "trainer": trainer or {},
        }
        return save_checkpoint(
            directory,
            model=self.network,
            kind=KIND,
            config=config,
            step=step,
            state=state,
            meta=meta,
        )

    @classmethod
    def load(cls, directory: str | os.PathLike) -> TradingPolicy:
        """Load a policy saved by :meth:`save` (or by ``multihead agent train``)."""
        ckpt = load_checkpoint(directory, kind=KIND)
        network = MultiTaskNetwork.from_checkpoint(ckpt, config_key="network")
        return cls(env_config=EnvConfig(**ckpt.config["env"]), network=network)

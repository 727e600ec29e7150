"""REINFORCE with a learned baseline (Williams 1992; Sutton and Barto 2018, section 13.4).

Each iteration runs ``num_envs`` episodes in lockstep with the current stochastic policy, then
takes one gradient step on

    - mean_t [ log pi(a_t | s_t) * (G_t - V(s_t)) ]   (policy gradient, advantage normalised)
    - entropy_coef * mean_t [ sum_heads H(pi_head(. | s_t)) ]   (keeps exploring)
    + value_coef * mean_t [ (V(s_t) - G_t)^2 ]   (the value head's own Regression loss)

with ``G_t`` the discounted return-to-go. ``V`` is the policy network's ``value`` head: the
baseline shares the trunk with the three action heads, a multi-task network in itself.

Training seeds are ``< EVAL_SEED_START``; evaluation uses seeds from there up, so evaluation
episodes are held out.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from multihead import _checks
from multihead.checkpoint import rng_state
from multihead_apps.agent.env import EnvConfig, TradingEnv
from multihead_apps.agent.policy import VALUE_HEAD, TradingPolicy

EVAL_SEED_START = 1_000_000_000


@dataclass(frozen=True)
class ReinforceConfig:
    """Hyper-parameters of :func:`train`.

    Args:
        iterations: gradient steps (each on ``num_envs`` fresh episodes).
        num_envs: episodes per iteration.
        gamma: discount of the return-to-go.
        lr: Adam learning rate.
        entropy_coef: weight of the summed per-head entropy bonus.
        value_coef: weight of the value head's loss.
        reward_scale: rewards (per-step log returns, ~1e-3) are multiplied by this so that
            returns and values are of order 1.
        max_grad_norm: gradient clipping.
        hidden: widths of the policy's MLP trunk.
        seed: seeds the network initialisation, the action sampling and the training seeds.
    """

    iterations: int = 500
    num_envs: int = 16
    gamma: float = 0.9
    lr: float = 3e-3
    entropy_coef: float = 0.003
    value_coef: float = 0.5
    reward_scale: float = 100.0
    max_grad_norm: float = 1.0
    hidden: tuple[int, ...] = (64, 64)
    seed: int = 0

    def __post_init__(self) -> None:
        _checks.require_int("iterations", self.iterations, minimum=1)
        _checks.require_int("num_envs", self.num_envs, minimum=1)
        _checks.require_number("gamma", self.gamma, minimum=0, maximum=1)
        for name in ("lr", "reward_scale", "max_grad_norm"):
            _checks.require_number(name, getattr(self, name), above=0)
        for name in ("entropy_coef", "value_coef"):
            _checks.require_number(name, getattr(self, name), minimum=0)
        if not isinstance(self.hidden, (tuple, list)):
            raise TypeError(
                f"hidden must be a tuple of layer widths, got {type(self.hidden).__name__}"
            )
        object.__setattr__(self, "hidden", tuple(self.hidden))
        if not self.hidden:
            raise ValueError("hidden must name at least one layer width, got ()")
        for i, width in enumerate(self.hidden):
            _checks.require_int(f"hidden[{i}]", width, minimum=1)
        _checks.require_int("seed", self.seed, minimum=0)


@dataclass
class Rollout:
    """``num_envs`` episodes in lockstep: obs ``(T, N, D)``, actions ``(T, N, 3)``, rewards
    and alive ``(T, N)`` (alive is False after an episode ended early)."""

    obs: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    alive: torch.Tensor

    @property
    def episode_returns(self) -> torch.Tensor:
        """Undiscounted return (log final equity) per episode, ``(N,)``."""
        return (self.rewards * self.alive).sum(0)


def rollout(
    policy: TradingPolicy,
    envs: list[TradingEnv],
    seeds: list[int],
    *,
    generator: torch.Generator | None = None,
    greedy: bool = False,
) -> Rollout:
    """Play one episode per env (seeded) with ``policy`` in lockstep."""
    horizon = envs[0].config.horizon
    n = len(envs)
    obs = np.stack([env.reset(seed=s)[0] for env, s in zip(envs, seeds)])
    all_obs = np.zeros((horizon, n, obs.shape[1]), dtype=np.float32)
    all_actions = np.zeros((horizon, n, 3), dtype=np.int64)
    rewards = np.zeros((horizon, n), dtype=np.float64)
    alive = np.zeros((horizon, n), dtype=bool)
    running = np.ones(n, dtype=bool)
    for t in range(horizon):
        all_obs[t] = obs
        alive[t] = running
        step = policy.act(torch.from_numpy(obs), greedy=greedy, generator=generator)
        actions = step.actions.numpy()
        all_actions[t] = actions
        for i, env in enumerate(envs):
            if not running[i]:
                continue
            o, r, terminated, truncated, _ = env.step(actions[i])
            obs[i] = o
            rewards[t, i] = r
            running[i] = not (terminated or truncated)
        if not running.any():
            break
    return Rollout(
        obs=torch.from_numpy(all_obs),
        actions=torch.from_numpy(all_actions),
        rewards=torch.from_numpy(rewards),
        alive=torch.from_numpy(alive),
    )


def discounted_returns(rewards: torch.Tensor, alive: torch.Tensor, gamma: float) -> torch.Tensor:
    """``G_t = r_t + gamma * G_{t+1}``, ``(T, N)``, zero after an episode ends."""
    out = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[0])
    for t in range(rewards.shape[0] - 1, -1, -1):
        running = (rewards[t] + gamma * running) * alive[t]
        out[t] = running
    return out


def train_seeds(config: ReinforceConfig, iteration: int) -> list[int]:
    """The env seeds of one iteration: distinct across iterations, below EVAL_SEED_START."""
    base = (config.seed * 7_919_993 + iteration * config.num_envs) % (
        EVAL_SEED_START - config.num_envs
    )
    return [base + i for i in range(config.num_envs)]


@dataclass
class TrainResult:
    policy: TradingPolicy
    history: list[dict[str, float]] = field(default_factory=list)
    optimizer_state: dict[str, Any] | None = None


def reinforce_loss(
    policy: TradingPolicy, batch: Rollout, config: ReinforceConfig
) -> tuple[torch.Tensor, dict[str, float]]:
    """The loss of one REINFORCE update and its parts (see the module docstring)."""
    returns = discounted_returns(batch.rewards * config.reward_scale, batch.alive, config.gamma)
    keep = batch.alive.reshape(-1)  # (T*N,)
    obs = batch.obs.reshape(-1, batch.obs.shape[-1])[keep]  # (M, D)
    actions = batch.actions.reshape(-1, 3)[keep]  # (M, 3)
    g = returns.reshape(-1)[keep].float()  # (M,)
    outputs = policy(obs)
    log_prob, entropy = policy.log_prob(outputs, actions)
    advantage = g - outputs[VALUE_HEAD].detach()
    # Normalising the advantage keeps the step size independent of the reward scale.
    advantage = (advantage - advantage.mean()) / (advantage.std() + 1e-8)
    pg = -(log_prob * advantage).mean()
    ent = sum(e.mean() for e in entropy.values())
    value_loss = policy.network.losses(outputs, {VALUE_HEAD: g})[VALUE_HEAD]
    loss = pg - config.entropy_coef * ent + config.value_coef * value_loss
    parts = {
        "policy_loss": pg.item(),
        "value_loss": value_loss.item(),
        **{f"entropy_{k}": v.mean().item() for k, v in entropy.items()},
    }
    return loss, parts


def train(
    config: ReinforceConfig | None = None,
    *,
    env_config: EnvConfig | None = None,
    policy: TradingPolicy | None = None,
    progress: bool = True,
    callback: Callable[[int, TradingPolicy, dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train a :class:`TradingPolicy` with REINFORCE and a value baseline.

    Args:
        config: hyper-parameters (defaults: :class:`ReinforceConfig`).
        env_config: the environment (defaults: :class:`EnvConfig`).
        policy: continue training this policy instead of a fresh one.
        progress: show a tqdm progress bar with the mean episode return.
        callback: called after every iteration with ``(iteration, policy, stats)``.

    Example:
        >>> from multihead_apps.agent.env import EnvConfig
        >>> cfg = ReinforceConfig(iterations=2, num_envs=2, hidden=(8,))
        >>> result = train(cfg, env_config=EnvConfig(horizon=16), progress=False)
        >>> len(result.history), sorted(result.history[0])[:2]
        (2, ['entropy_leverage', 'entropy_risk'])
    """
    config = config or ReinforceConfig()
    env_config = env_config or EnvConfig()
    torch.manual_seed(config.seed)
    if policy is None:
        policy = TradingPolicy(env_config=env_config, hidden=config.hidden)
    generator = torch.Generator().manual_seed(config.seed)
    opt = torch.optim.Adam(policy.parameters(), lr=config.lr)
    envs = [TradingEnv(env_config) for _ in range(config.num_envs)]
    history: list[dict[str, float]] = []
    bar = tqdm(range(config.iterations), desc="agent train", disable=not progress, unit="it")
    for it in bar:
        policy.train()
        batch = rollout(policy, envs, train_seeds(config, it), generator=generator)
        loss, parts = reinforce_loss(policy, batch, config)
        opt.zero_grad()
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(policy.parameters(), config.max_grad_norm)
        opt.step()
        stats = {
            "iteration": it,
            "mean_return": float(batch.episode_returns.mean()),
            "grad_norm": float(grad_norm),
            **parts,
        }
        if not math.isfinite(stats["policy_loss"]):
            raise ValueError(f"training diverged at iteration {it}: {stats}")
        history.append(stats)
        bar.set_postfix(ret=f"{stats['mean_return']:+.3f}", H_side=f"{parts['entropy_side']:.2f}")
        if callback is not None:
            callback(it, policy, stats)
    return TrainResult(policy=policy, history=history, optimizer_state=opt.state_dict())


def training_state(result: TrainResult) -> dict[str, Any]:
    """What a checkpoint keeps of a run besides the weights (loads with weights_only=True)."""
    return {"optimizer": result.optimizer_state, "rng": rng_state()}


def config_dict(config: ReinforceConfig) -> dict[str, Any]:
    return asdict(config)

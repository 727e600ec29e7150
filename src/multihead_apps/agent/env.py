"""A synthetic trading environment with the Gymnasium ``Env`` API.

The price follows a regime-switching random walk (a hidden Markov chain picks the drift and
volatility of each step's log return). The agent never sees the regime; it sees a noisy
indicator of it (an exponential moving average of a noisy one-hot), recent returns, realized
volatility and its own state. Each step it chooses

* ``side``: 0 = short, 1 = long;
* ``leverage``: bin ``i`` of ``leverage_bins`` evenly spaced values in ``leverage_range``:
  the position is ``side * leverage`` times equity, so leverage sets the position size;
* ``risk``: bin ``j`` of ``risk_bins`` values in ``risk_range``: the largest drawdown from the
  equity peak the agent tolerates. When the drawdown reaches it, the position is stopped out:
  forced flat for ``cooldown`` steps, after which the peak is reset. Tight risk caps drawdown
  but sits out (and pays to re-enter); ``risk = 1`` never stops.

Reward is the log growth of equity, ``log(1 + exposure * R - cost * |exposure change|)``, so an
episode's return is ``log(final equity)``. Everything random is drawn from the seed at
``reset``, so a seed fixes the price path whatever the agent does: policies can be compared on
the same seeds (paired).

Gymnasium's API splits the old ``done`` into ``terminated`` (ruin: equity below
``ruin_equity``) and ``truncated`` (the horizon)::

    obs, info = env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())

Example:
    >>> env = TradingEnv()
    >>> obs, info = env.reset(seed=0)
    >>> obs.shape, env.action_space
    ((16,), MultiDiscrete([  2 100 100]))
    >>> obs, reward, terminated, truncated, info = env.step(env.buy_and_hold_action())
    >>> sorted(info)[:3]
    ['cost', 'drawdown', 'equity']
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces

from multihead import _checks

SHORT, LONG = 0, 1
REGIMES = ("bull", "bear", "chop")


def _grid(low: float, high: float, n: int) -> np.ndarray:
    """``n`` evenly spaced values from ``low`` to ``high`` inclusive (the Binned head's grid)."""
    return low + np.arange(n, dtype=np.float64) * ((high - low) / (n - 1))


@dataclass(frozen=True)
class EnvConfig:
    """Parameters of :class:`TradingEnv`. Per-step quantities are per trading step.

    Args:
        horizon: steps per episode (truncation).
        window: recent log returns in the observation.
        drift, vol: per-regime mean and standard deviation of the log return
            (bull, bear, chop).
        regime_probs: the regime chain's stationary distribution; bull is most common, so
            buy-and-hold earns a positive drift on average.
        switch_prob: chance per step that the regime is redrawn from ``regime_probs``.
        signal_noise: standard deviation of the noise on the one-hot regime indicator.
        signal_smoothing: EMA coefficient of the indicator the agent sees (higher = faster,
            noisier).
        cost: transaction cost per unit of exposure traded (fraction of equity).
        leverage_range, leverage_bins: the leverage grid; 1.0 should lie on it.
        risk_range, risk_bins: the drawdown-tolerance grid; its top value 1.0 never stops.
        cooldown: steps forced flat after a stop-out (at least 1).
        ruin_equity: equity (start 1.0) below which the episode terminates.
    """

    horizon: int = 256
    window: int = 8
    drift: tuple[float, float, float] = (0.0015, -0.0015, 0.0)
    vol: tuple[float, float, float] = (0.008, 0.010, 0.020)
    regime_probs: tuple[float, float, float] = (0.5, 0.25, 0.25)
    switch_prob: float = 0.03
    signal_noise: float = 1.0
    signal_smoothing: float = 0.2
    cost: float = 0.0005
    leverage_range: tuple[float, float] = (0.02, 2.0)
    leverage_bins: int = 100
    risk_range: tuple[float, float] = (0.01, 1.0)
    risk_bins: int = 100
    cooldown: int = 5
    ruin_equity: float = 0.1

    def __post_init__(self) -> None:
        for name in ("horizon", "window"):
            _checks.require_int(name, getattr(self, name), minimum=1)
        for name in ("leverage_bins", "risk_bins"):
            _checks.require_int(name, getattr(self, name), minimum=2)
        # 0 would let a stop fire every step without ever flattening the position.
        _checks.require_int("cooldown", self.cooldown, minimum=1)
        # JSON gives lists back; keep tuples so configs compare equal after a round trip.
        for name in ("drift", "vol", "regime_probs", "leverage_range", "risk_range"):
            values = getattr(self, name)
            if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
                raise TypeError(f"{name} must be a sequence of numbers, got {values!r}")
            floats = tuple(_checks.require_number(f"{name}[{i}]", v) for i, v in enumerate(values))
            object.__setattr__(self, name, floats)
        for name in ("drift", "vol", "regime_probs"):
            if len(getattr(self, name)) != len(REGIMES):
                raise ValueError(
                    f"{name} must give one value per regime {REGIMES}, got {getattr(self, name)}"
                )
        for i, v in enumerate(self.vol):
            _checks.require_number(f"vol[{i}]", v, above=0)
        if min(self.regime_probs) < 0 or not math.isclose(sum(self.regime_probs), 1.0):
            raise ValueError(f"regime_probs must be a distribution, got {self.regime_probs}")
        for name in ("switch_prob", "signal_smoothing"):
            _checks.require_number(name, getattr(self, name), above=0, maximum=1)
        for name in ("signal_noise", "cost"):
            _checks.require_number(name, getattr(self, name), minimum=0)
        for name in ("leverage_range", "risk_range"):
            pair = getattr(self, name)
            if len(pair) != 2 or not 0 <= pair[0] < pair[1]:
                raise ValueError(f"{name} must be (low, high) with 0 <= low < high, got {pair}")
        if self.risk_range[1] > 1.0:
            raise ValueError(f"risk_range must lie within [0, 1], got {self.risk_range}")
        _checks.require_number("ruin_equity", self.ruin_equity, above=0, below=1)

    @property
    def obs_dim(self) -> int:
        return len(REGIMES) + self.window + 5

    def leverage_values(self) -> np.ndarray:
        return _grid(*self.leverage_range, self.leverage_bins)

    def risk_values(self) -> np.ndarray:
        return _grid(*self.risk_range, self.risk_bins)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# Observation features are scaled to order 1 by these constants (typical per-step vol).
RETURN_SCALE = 0.01
OBS_BOUND = 10.0


@dataclass
class _EpisodeState:
    regimes: np.ndarray
    returns: np.ndarray  # log returns, (horizon + window,): the first `window` are history
    indicator: np.ndarray  # smoothed noisy one-hot seen at each step, (horizon, 3)
    t: int = 0
    equity: float = 1.0
    peak: float = 1.0  # since the last stop-out (what the stop watches)
    best: float = 1.0  # over the whole episode (for max_drawdown)
    max_drawdown: float = 0.0
    exposure: float = 0.0
    cooldown: int = 0
    stops: int = 0
    traded: float = 0.0


class TradingEnv(gymnasium.Env):
    """See the module docstring. ``config`` is an :class:`EnvConfig`."""

    metadata = {"render_modes": []}  # noqa: RUF012 (Gymnasium's class attribute)

    def __init__(self, config: EnvConfig | None = None) -> None:
        super().__init__()
        self.config = config or EnvConfig()
        if not isinstance(self.config, EnvConfig):
            raise TypeError(f"config must be an EnvConfig, got {type(self.config).__name__}")
        c = self.config
        self.observation_space = spaces.Box(
            -OBS_BOUND, OBS_BOUND, shape=(c.obs_dim,), dtype=np.float32
        )
        self.action_space = spaces.MultiDiscrete([2, c.leverage_bins, c.risk_bins])
        self._leverage = c.leverage_values()
        self._risk = c.risk_values()
        self._state: _EpisodeState | None = None

    # --- helpers for baselines ---------------------------------------------------------
    def buy_and_hold_action(self) -> np.ndarray:
        """Long at the leverage bin closest to 1.0, never stopped out (top risk bin)."""
        lev = int(np.argmin(np.abs(self._leverage - 1.0)))
        return np.array([LONG, lev, self.config.risk_bins - 1], dtype=np.int64)

    def decode_action(self, action: np.ndarray) -> tuple[int, float, float]:
        """(side, leverage, risk) values of an action."""
        a = np.asarray(action)
        if a.shape != (3,) or not self.action_space.contains(a.astype(np.int64)):
            raise ValueError(
                f"action {action!r} is not in {self.action_space}; expected "
                "[side in {0, 1}, leverage bin, risk bin]"
            )
        return int(a[0]), float(self._leverage[a[1]]), float(self._risk[a[2]])

    def episode_log_returns(self) -> np.ndarray:
        """The log return traded at each step of the current episode, ``(horizon,)``.

        Hidden from the agent (it sees only past returns); for analysis and tests.
        """
        if self._state is None:
            raise RuntimeError("call reset() first")
        return self._state.returns[self.config.window :].copy()

    # --- Gymnasium API -----------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        c = self.config
        rng = self.np_random
        n = c.horizon + c.window
        regimes = np.empty(n, dtype=np.int64)
        regimes[0] = rng.choice(len(REGIMES), p=c.regime_probs)
        switches = rng.random(n) < c.switch_prob
        redraws = rng.choice(len(REGIMES), size=n, p=c.regime_probs)
        for t in range(1, n):
            regimes[t] = redraws[t] if switches[t] else regimes[t - 1]
        drift, vol = np.asarray(c.drift), np.asarray(c.vol)
        returns = drift[regimes] + vol[regimes] * rng.standard_normal(n)
        noisy = np.eye(len(REGIMES))[regimes] + c.signal_noise * rng.standard_normal(
            (n, len(REGIMES))
        )
        smooth = np.empty_like(noisy)
        smooth[0] = np.full(len(REGIMES), 1.0 / len(REGIMES))
        for t in range(1, n):
            smooth[t] = (1 - c.signal_smoothing) * smooth[t - 1] + c.signal_smoothing * noisy[t]
        # Step t trades the return returns[window + t]; the indicator at that step reflects
        # the regime of that same step (it is a forecast signal, revealed only partly).
        self._state = _EpisodeState(
            regimes=regimes[c.window :], returns=returns, indicator=smooth[c.window :]
        )
        return self._observation(), self._info(cost=0.0, stopped=False)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        s = self._state
        if s is None:
            raise RuntimeError("call reset() before step()")
        if s.t >= self.config.horizon or s.equity < self.config.ruin_equity:
            raise RuntimeError("the episode is over; call reset()")
        c = self.config
        side, leverage, risk = self.decode_action(action)
        restart = False
        if s.cooldown > 0:
            target = 0.0
            s.cooldown -= 1
            restart = s.cooldown == 0
        else:
            target = leverage if side == LONG else -leverage
        traded = abs(target - s.exposure)
        cost = c.cost * traded
        simple = math.expm1(s.returns[c.window + s.t])
        growth = max(1.0 + target * simple - cost, 1e-12)
        reward = math.log(growth)
        s.equity *= growth
        s.exposure = target
        s.traded += traded
        # The episode's worst drawdown is measured from the running peak; the stop watches
        # the peak since the last restart, else one stop would keep the agent out for good.
        s.max_drawdown = max(s.max_drawdown, 1.0 - s.equity / max(s.best, s.equity))
        s.best = max(s.best, s.equity)
        s.peak = s.equity if restart else max(s.peak, s.equity)
        drawdown = 1.0 - s.equity / s.peak
        stopped = False
        if target != 0.0 and drawdown >= risk:
            # Stop-out: flat for `cooldown` steps, then trading resumes from a fresh peak.
            stopped = True
            s.stops += 1
            s.cooldown = c.cooldown
        s.t += 1
        terminated = s.equity < c.ruin_equity
        truncated = not terminated and s.t >= c.horizon
        return self._observation(), reward, terminated, truncated, self._info(cost, stopped)

    # --- internals ---------------------------------------------------------------------
    def _observation(self) -> np.ndarray:
        s, c = self._state, self.config
        assert s is not None
        t = min(s.t, c.horizon - 1)
        recent = s.returns[s.t : s.t + c.window] / RETURN_SCALE  # the `window` before step t
        realized = float(np.std(s.returns[s.t : s.t + c.window])) / RETURN_SCALE
        obs = np.concatenate(
            [
                s.indicator[t],
                recent,
                [
                    realized,
                    s.exposure,
                    10.0 * (1.0 - s.equity / s.peak),  # drawdown, in tenths
                    s.cooldown / max(c.cooldown, 1),
                    1.0 - s.t / c.horizon,
                ],
            ]
        )
        return np.clip(obs, -OBS_BOUND, OBS_BOUND).astype(np.float32)

    def _info(self, cost: float, stopped: bool) -> dict[str, Any]:
        s = self._state
        assert s is not None
        t = min(s.t, self.config.horizon - 1)
        return {
            "equity": s.equity,
            "exposure": s.exposure,
            "drawdown": 1.0 - s.equity / s.peak,
            "max_drawdown": s.max_drawdown,
            # The regime the next action trades in: hidden from the agent, for analysis only.
            "regime": REGIMES[int(s.regimes[t])],
            "cost": cost,
            "stopped": stopped,
            "stops": s.stops,
        }


def register_env() -> None:
    """Make ``gymnasium.make("multihead/Trading-v0")`` build a :class:`TradingEnv`."""
    if "multihead/Trading-v0" not in gymnasium.registry:
        gymnasium.register(id="multihead/Trading-v0", entry_point=TradingEnv)

"""A trading agent on a multi-task network: a Gymnasium environment, a 3-head policy
(side, leverage, risk) with a value baseline, REINFORCE training and held-out evaluation.

Needs the ``agent`` extra (``gymnasium``).
"""

from multihead_apps.agent.env import EnvConfig, TradingEnv, register_env
from multihead_apps.agent.evaluate import evaluate, format_report
from multihead_apps.agent.policy import ACTION_HEADS, TradingPolicy, agent_heads
from multihead_apps.agent.reinforce import EVAL_SEED_START, ReinforceConfig, train

__all__ = [
    "ACTION_HEADS",
    "EVAL_SEED_START",
    "EnvConfig",
    "ReinforceConfig",
    "TradingEnv",
    "TradingPolicy",
    "agent_heads",
    "evaluate",
    "format_report",
    "register_env",
    "train",
]

"""Training time: wall time since the start minus the pauses (evaluation, checkpoints), for
``time_limit`` and for tokens per second."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator


class TrainingClock:
    """Seconds spent training since the clock was made; time inside :meth:`pause` does not
    count.

    Example:
        >>> now = [0.0]
        >>> clock = TrainingClock(lambda: now[0])
        >>> now[0] = 2.0
        >>> with clock.pause():
        ...     now[0] = 5.0            # three seconds evaluating
        >>> now[0] = 6.0
        >>> clock.trained()
        3.0
    """

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self._start = clock()
        self._paused = 0.0

    def trained(self) -> float:
        return self._clock() - self._start - self._paused

    @contextlib.contextmanager
    def pause(self) -> Iterator[None]:
        """Time spent inside the block is not training time."""
        t0 = self._clock()
        try:
            yield
        finally:
            self._paused += self._clock() - t0


class TokenRate:
    """Tokens per second of training time over a window that :meth:`restart` opens."""

    def __init__(self, clock: TrainingClock) -> None:
        self._clock = clock
        self.restart()

    def restart(self) -> None:
        self._since, self._tokens = self._clock.trained(), 0

    def add(self, tokens: int) -> None:
        self._tokens += tokens

    def per_s(self) -> float:
        return self._tokens / max(self._clock.trained() - self._since, 1e-9)

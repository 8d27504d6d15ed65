"""A small circuit breaker for calls to a remote service.

Why: when the NLU service is down, every customer message would otherwise wait for a full
timeout before the bot can say "a person will help you". After `failures` consecutive
failures the breaker opens and calls fail at once; after `reset_s` one probe call is let
through (half-open), and its outcome closes or re-opens the circuit.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import Enum


class BreakerState(str, Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    def __init__(
        self,
        failures: int = 5,
        reset_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failures < 1 or reset_s <= 0:
            raise ValueError("failures must be >= 1 and reset_s > 0")
        self.failures = failures
        self.reset_s = reset_s
        self._clock = clock
        self._consecutive = 0
        self._opened_at: float | None = None
        self._probe_in_flight = False
        self._probe_started = 0.0

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self._clock() - self._opened_at >= self.reset_s:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def retry_in(self) -> float:
        """Seconds until a probe will be allowed (0 when calls are allowed now)."""
        if self._opened_at is None:
            return 0.0
        return max(0.0, self.reset_s - (self._clock() - self._opened_at))

    def allow(self) -> bool:
        """May a call go out now? In half-open state only one probe at a time may; a probe
        that never reported back (its caller vanished) gives way after `reset_s`."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is not BreakerState.HALF_OPEN:
            return False
        stale = self._clock() - self._probe_started >= self.reset_s
        if not self._probe_in_flight or stale:
            self._probe_in_flight = True
            self._probe_started = self._clock()
            return True
        return False

    def abandon(self) -> None:
        """The call `allow` let out ended without an outcome (cancelled): if it was the
        probe, the next call may probe instead; the circuit stays as it was."""
        self._probe_in_flight = False

    def record_success(self) -> None:
        self._consecutive = 0
        self._opened_at = None
        self._probe_in_flight = False

    def record_failure(self) -> None:
        self._consecutive += 1
        if self._probe_in_flight or self._consecutive >= self.failures:
            self._opened_at = self._clock()  # (re)open: a failed probe restarts the wait
        self._probe_in_flight = False

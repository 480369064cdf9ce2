"""The emulator object: configuration, recorded state, rate limiter and fault rules together."""

from __future__ import annotations

import random

from aiohttp import web

from .app import create_app
from .config import EmulatorConfig
from .faults import Faults
from .ratelimit import FixedWindowLimiter
from .state import State


class Emulator:
    """A strict Klaviyo API emulator; serve it with :meth:`app` or ``start_emulator``."""

    def __init__(self, config: EmulatorConfig | None = None) -> None:
        self.config = config if config is not None else EmulatorConfig()
        self.state = State(self.config.max_rejected_kept, self.config.max_events_kept)
        self.limiter = FixedWindowLimiter(self.config.limits_for)
        self.faults = Faults(random.Random(self.config.fault_seed))

    def reset(self) -> None:
        """Forget recorded state and rate-limit counts; configuration and faults stay."""
        self.state.reset()
        self.limiter.reset()

    def app(self) -> web.Application:
        """A fresh aiohttp application serving this emulator."""
        return create_app(self)

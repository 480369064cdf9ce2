"""Console sessions: password login, random tokens held server-side, expiry, CSRF tokens.

The cookie holds only a random token; the server keeps its SHA-256 with the session's CSRF token
and times, so a leaked session table reveals no cookie. A session ends after ``IDLE_S`` without
a request, ``LIFETIME_S`` after login, or at logout. Failed logins are limited per process.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import deque
from collections.abc import Callable

import msgspec

from mparticle_klaviyo.secret import Secret

COOKIE = "mpk_console"
IDLE_S = 30 * 60
LIFETIME_S = 12 * 3600
MAX_SESSIONS = 100
# Failed logins allowed per FAILURE_WINDOW_S: a guess costs an attacker minutes, an operator nothing.
MAX_FAILURES = 10
FAILURE_WINDOW_S = 60.0


class Session(msgspec.Struct, kw_only=True):
    """One logged-in browser: its CSRF token and when it started and was last used."""

    csrf: str
    started: float
    seen: float


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()


class Sessions:
    """The logged-in sessions of this process (a restart logs everyone out)."""

    def __init__(self, password: Secret, clock: Callable[[], float] = time.monotonic) -> None:
        self._password = _digest(password.reveal())
        self._clock = clock
        self._sessions: dict[bytes, Session] = {}
        self._failures: deque[float] = deque()

    def throttled(self) -> bool:
        """Whether too many logins failed lately (the next attempt is refused unread)."""
        cutoff = self._clock() - FAILURE_WINDOW_S
        while self._failures and self._failures[0] < cutoff:
            self._failures.popleft()
        return len(self._failures) >= MAX_FAILURES

    def login(self, password: str) -> str | None:
        """A new session's token when ``password`` is right, else None (and a failure counted)."""
        # Digests of equal length, compared in constant time: the answer's timing tells nothing.
        if not hmac.compare_digest(_digest(password), self._password):
            self._failures.append(self._clock())
            return None
        token = secrets.token_urlsafe(32)
        now = self._clock()
        if len(self._sessions) >= MAX_SESSIONS:
            oldest = min(self._sessions, key=lambda key: self._sessions[key].seen)
            del self._sessions[oldest]
        self._sessions[_digest(token)] = Session(csrf=secrets.token_urlsafe(32), started=now, seen=now)
        return token

    def find(self, token: str | None) -> Session | None:
        """The live session of a cookie's token (its idle time restarts), or None."""
        if not token:
            return None
        key = _digest(token)
        session = self._sessions.get(key)
        now = self._clock()
        if session is None:
            return None
        if now - session.seen > IDLE_S or now - session.started > LIFETIME_S:
            del self._sessions[key]
            return None
        session.seen = now
        return session

    def logout(self, token: str | None) -> None:
        """End the session of ``token`` (nothing when there is none)."""
        if token:
            self._sessions.pop(_digest(token), None)


def csrf_ok(session: Session, sent: str | None) -> bool:
    """Whether a request carries its session's CSRF token (compared in constant time)."""
    return sent is not None and hmac.compare_digest(sent.encode(), session.csrf.encode())

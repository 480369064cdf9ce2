"""Sessions: login, expiry, logout, CSRF tokens, failed-login limit."""

from __future__ import annotations

from mparticle_klaviyo.console.sessions import IDLE_S, LIFETIME_S, MAX_FAILURES, Sessions, csrf_ok
from mparticle_klaviyo.secret import Secret


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_right_password_gives_a_session_and_a_wrong_one_none() -> None:
    sessions = Sessions(Secret("the password"))
    assert sessions.login("the password") is not None
    assert sessions.login("the passwore") is None


def test_each_login_gets_its_own_token_and_csrf_token() -> None:
    sessions = Sessions(Secret("the password"))
    one, two = sessions.login("the password"), sessions.login("the password")
    assert one != two
    first, second = sessions.find(one), sessions.find(two)
    assert first is not None and second is not None
    assert first.csrf != second.csrf


def test_an_idle_session_expires() -> None:
    clock = Clock()
    sessions = Sessions(Secret("the password"), clock)
    token = sessions.login("the password")
    clock.now += IDLE_S - 1
    assert sessions.find(token) is not None
    clock.now += IDLE_S + 1
    assert sessions.find(token) is None


def test_a_busy_session_still_ends_after_its_lifetime() -> None:
    clock = Clock()
    sessions = Sessions(Secret("the password"), clock)
    token = sessions.login("the password")
    while clock.now < 1000.0 + LIFETIME_S:
        assert sessions.find(token) is not None
        clock.now += IDLE_S / 2
    clock.now += 1
    assert sessions.find(token) is None


def test_logout_forgets_the_session() -> None:
    sessions = Sessions(Secret("the password"))
    token = sessions.login("the password")
    sessions.logout(token)
    assert sessions.find(token) is None


def test_an_unknown_or_missing_token_finds_nothing() -> None:
    sessions = Sessions(Secret("the password"))
    assert sessions.find("made-up") is None
    assert sessions.find(None) is None


def test_logins_are_throttled_after_many_failures_and_again_allowed_later() -> None:
    clock = Clock()
    sessions = Sessions(Secret("the password"), clock)
    for _ in range(MAX_FAILURES):
        assert not sessions.throttled()
        sessions.login("guess")
    assert sessions.throttled()
    clock.now += 61
    assert not sessions.throttled()


def test_the_csrf_check_takes_only_the_sessions_token() -> None:
    sessions = Sessions(Secret("the password"))
    session = sessions.find(sessions.login("the password"))
    assert session is not None
    assert csrf_ok(session, session.csrf)
    assert not csrf_ok(session, session.csrf[:-1])
    assert not csrf_ok(session, None)

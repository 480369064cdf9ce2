"""The console over plain HTTP: access, sessions, CSRF, and that ingest is unaffected."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from mparticle_klaviyo.console.forms import FORM_BYTES
from mparticle_klaviyo.store.base import DeadFilter
from tests.console.helpers import PASSWORD, client, logged_in, seed_dead, served
from tests.service.e2e_helpers import run_async
from tests.service.live import ACME_SECRET, ACME_TOKEN, ACME_WEBHOOK, BETA_SECRET, basic


def test_the_console_is_off_without_a_password(tmp_path: Path) -> None:
    async def go() -> None:
        async with served(tmp_path) as app, client() as session, session.get(f"{app.url}/console/login") as answer:
            assert answer.status == 404

    run_async(go())


def test_a_page_without_a_session_sends_the_browser_to_the_login_form(tmp_path: Path) -> None:
    async def go() -> None:
        async with (
            served(tmp_path, console_password=PASSWORD) as app,
            client() as session,
            session.get(f"{app.url}/console/dead-letters", allow_redirects=False) as answer,
        ):
            assert answer.status == 303
            assert answer.headers["Location"] == "/console/login"

    run_async(go())


def test_a_purge_without_a_session_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    ids = seed_dead(tmp_path)

    async def go() -> None:
        async with served(tmp_path, console_password=PASSWORD) as app, client() as session:
            form = {"action": "purge", "confirm": "yes", "id": str(ids[0]), "csrf": "guess"}
            async with session.post(f"{app.url}/console/dead-letters/apply?scope=selected", data=form) as answer:
                assert answer.status == 401
            assert len(await app.store.dead(DeadFilter())) == 1

    run_async(go())


def test_a_purge_without_the_csrf_token_is_refused_and_one_with_it_is_done(tmp_path: Path) -> None:
    ids = seed_dead(tmp_path)

    async def go() -> None:
        async with served(tmp_path, console_password=PASSWORD) as app, client() as session:
            csrf = await logged_in(session, app.url)
            url = f"{app.url}/console/dead-letters/apply?scope=selected"
            form = {"action": "purge", "confirm": "yes", "id": str(ids[0])}
            for sent in ({}, {"csrf": "wrong"}, {"csrf": ""}):
                async with session.post(url, data={**form, **sent}) as answer:
                    assert answer.status == 403
            assert len(await app.store.dead(DeadFilter())) == 1
            async with session.post(url, data={**form, "csrf": csrf}) as answer:
                assert answer.status == 200
                assert "Purged 1 job(s)." in await answer.text()
            assert await app.store.dead(DeadFilter()) == []

    run_async(go())


def test_a_post_from_another_origin_is_refused_even_with_the_token(tmp_path: Path) -> None:
    ids = seed_dead(tmp_path)

    async def go() -> None:
        async with served(tmp_path, console_password=PASSWORD) as app, client() as session:
            csrf = await logged_in(session, app.url)
            form = {"action": "purge", "confirm": "yes", "id": str(ids[0]), "csrf": csrf}
            url = f"{app.url}/console/dead-letters/apply?scope=selected"
            async with session.post(url, data=form, headers={"Origin": "https://evil.example"}) as answer:
                assert answer.status == 403
            assert len(await app.store.dead(DeadFilter())) == 1

    run_async(go())


def test_the_confirmation_step_changes_nothing(tmp_path: Path) -> None:
    ids = seed_dead(tmp_path)

    async def go() -> None:
        async with served(tmp_path, console_password=PASSWORD) as app, client() as session:
            csrf = await logged_in(session, app.url)
            form = {"action": "purge", "id": str(ids[0]), "csrf": csrf}
            async with session.post(f"{app.url}/console/dead-letters/confirm?scope=selected", data=form) as answer:
                assert answer.status == 200
                assert "Purge 1 job(s)" in await answer.text()
            assert len(await app.store.dead(DeadFilter())) == 1

    run_async(go())


def test_a_redrive_wakes_delivery(tmp_path: Path) -> None:
    ids = seed_dead(tmp_path)

    async def go() -> None:
        async with served(tmp_path, console_password=PASSWORD) as app, client() as session:
            csrf = await logged_in(session, app.url)
            form = {"action": "redrive", "confirm": "yes", "id": str(ids[0]), "csrf": csrf}
            async with session.post(f"{app.url}/console/dead-letters/apply?scope=selected", data=form) as answer:
                assert "Redrove 1 job(s)." in await answer.text()
            assert await app.store.dead(DeadFilter()) == []
            assert "acme" in app.woken

    run_async(go())


def test_the_session_cookie_is_http_only_strict_and_scoped_to_the_console(tmp_path: Path) -> None:
    async def go() -> None:
        async with served(tmp_path, console_password=PASSWORD) as app, client() as session:
            url = f"{app.url}/console/login"
            async with session.post(url, data={"password": PASSWORD}, allow_redirects=False) as answer:
                cookie = answer.headers["Set-Cookie"]
            assert answer.status == 303
            assert "HttpOnly" in cookie
            assert "SameSite=Strict" in cookie
            assert "Path=/console" in cookie

    run_async(go())


def test_a_wrong_password_gets_no_session(tmp_path: Path) -> None:
    async def go() -> None:
        async with (
            served(tmp_path, console_password=PASSWORD) as app,
            client() as session,
            session.post(f"{app.url}/console/login", data={"password": "nope"}) as answer,
        ):
            assert answer.status == 401
            assert "Set-Cookie" not in answer.headers

    run_async(go())


def test_logins_are_refused_after_ten_failures_in_a_minute(tmp_path: Path) -> None:
    async def go() -> None:
        async with served(tmp_path, console_password=PASSWORD) as app, client() as session:
            url = f"{app.url}/console/login"
            statuses = []
            for _ in range(11):
                async with session.post(url, data={"password": "guess"}) as answer:
                    statuses.append(answer.status)
            async with session.post(url, data={"password": PASSWORD}) as answer:
                statuses.append(answer.status)
            assert statuses == [401] * 10 + [429, 429]

    run_async(go())


def test_a_login_form_over_its_byte_budget_is_not_read(tmp_path: Path) -> None:
    async def go() -> None:
        async with served(tmp_path, console_password=PASSWORD) as app, client() as session:
            form = {"password": PASSWORD, "padding": "x" * 10_000}
            async with session.post(f"{app.url}/console/login", data=form) as answer:
                assert answer.status == 401

    run_async(go())


def test_a_form_over_its_byte_budget_is_refused_as_too_large_not_as_a_bad_token(tmp_path: Path) -> None:
    async def go() -> None:
        async with served(tmp_path, console_password=PASSWORD) as app, client() as session:
            csrf = await logged_in(session, app.url)
            form = {"csrf": csrf, "connection": "acme", "batch": "x" * (FORM_BYTES + 1)}
            async with session.post(f"{app.url}/console/playground", data=form) as answer:
                assert answer.status == 413
                text = await answer.text()
                assert f"{FORM_BYTES:,} bytes" in text and "token" not in text

    run_async(go())


def test_logout_ends_the_session_on_the_server(tmp_path: Path) -> None:
    async def go() -> None:
        async with served(tmp_path, console_password=PASSWORD) as app, client() as session:
            csrf = await logged_in(session, app.url)
            cookies = {c.key: c.value for c in session.cookie_jar}
            async with session.post(f"{app.url}/console/logout", data={"csrf": csrf}) as answer:
                assert answer.status == 200
            async with (
                aiohttp.ClientSession(cookies=cookies) as stolen,
                stolen.get(f"{app.url}/console/overview", allow_redirects=False) as answer,
            ):
                assert answer.status == 303

    run_async(go())


def test_no_page_renders_a_key_a_token_or_the_password(tmp_path: Path) -> None:
    ids = seed_dead(tmp_path)
    secrets = [PASSWORD, ACME_TOKEN, ACME_SECRET, ACME_WEBHOOK, BETA_SECRET, "DEMO01", "jane.doe@example.com"]

    async def go() -> None:
        async with served(tmp_path, console_password=PASSWORD) as app, client() as session:
            await logged_in(session, app.url)
            pages = ["overview", "overview/live", "api/history", "dead-letters", f"dead-letters/{ids[0]}", "playground"]
            for name in pages:
                async with session.get(f"{app.url}/console/{name}") as answer:
                    text = await answer.text()
                assert answer.status == 200, name
                assert [s for s in secrets if s in text] == [], name

    run_async(go())


def test_ingest_is_unaffected_and_console_refusals_are_not_counted_as_ingest(tmp_path: Path) -> None:
    async def go() -> None:
        async with served(tmp_path, console_password=PASSWORD) as app, client() as session:
            async with session.post(f"{app.url}/console/logout", data={}) as answer:
                assert answer.status == 401
            batch = {"user_identities": {"email": "a@example.com"}, "events": []}
            async with session.post(f"{app.url}/v2/events", json=batch, headers=basic()) as answer:
                assert answer.status == 202
            async with session.get(f"{app.url}/metrics") as answer:
                assert 'input="console"' not in await answer.text()

    run_async(go())


def test_concurrent_sessions_are_independent(tmp_path: Path) -> None:
    async def go() -> None:
        async with served(tmp_path, console_password=PASSWORD) as app, client() as one, client() as two:
            first, second = await asyncio.gather(logged_in(one, app.url), logged_in(two, app.url))
            assert first != second

    run_async(go())

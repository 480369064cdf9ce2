"""The Klaviyo HTTP client: one keep-alive aiohttp session; credentials are added only on the wire.

``send`` never raises for anything the network or Klaviyo does: every answer, timeout and reset
becomes an ``Outcome``. Keys never appear in a repr, an outcome, an exception message or a log
line; text that might echo a URL or a body is redacted before it leaves this module.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from types import TracebackType
from urllib.parse import urlsplit

import aiohttp
import msgspec

from mparticle_klaviyo import __version__
from mparticle_klaviyo.errors import ConfigError
from mparticle_klaviyo.klaviyo.classify import (
    Outcome,
    Permanent,
    Retryable,
    Throttled,
    classify_exception,
    classify_response,
)
from mparticle_klaviyo.klaviyo.limits import DEFAULT_REVISION
from mparticle_klaviyo.klaviyo.request import KlaviyoRequest
from mparticle_klaviyo.klaviyo.retry_after import parse_retry_after
from mparticle_klaviyo.secret import Secret

DEFAULT_BASE_URL = "https://a.klaviyo.com"
JSON_API = "application/vnd.api+json"
REDACTED = "***"

logger = logging.getLogger(__name__)


def user_agent() -> str:
    """Return ``mparticle-klaviyo/<version>``."""
    return f"mparticle-klaviyo/{__version__}"


class KlaviyoClient:
    """Sends ``KlaviyoRequest``s to one Klaviyo account and classifies each answer."""

    def __init__(
        self,
        *,
        public_key: Secret,
        private_key: Secret | None = None,
        base_url: str = DEFAULT_BASE_URL,
        revision: str = DEFAULT_REVISION,
        timeout_s: float = 10.0,
        pool_size: int = 100,
    ) -> None:
        self._secrets = tuple(s.reveal() for s in (public_key, private_key) if s)
        self.base_url = _checked_base_url(base_url, self._redact)
        self.revision = revision
        self.timeout_s = timeout_s
        self.pool_size = pool_size
        self._public_key = public_key
        self._private_key = private_key
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        private = REDACTED if self._private_key else None
        return (
            f"KlaviyoClient(base_url={self.base_url!r}, revision={self.revision!r}, "
            f"public_key={REDACTED!r}, private_key={private!r})"
        )

    async def __aenter__(self) -> KlaviyoClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connection pool (safe to call twice)."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(self, request: KlaviyoRequest) -> Outcome:
        """Send one request and classify the answer; never raises for network trouble."""
        if request.auth == "private" and not self._private_key:
            return Permanent(status=0, reason="missing_private_key", detail="no private key configured")
        try:
            body = msgspec.json.encode(request.body)
        except (msgspec.EncodeError, TypeError, ValueError) as exc:
            return Permanent(status=0, reason="unencodable_body", detail=self._redact(str(exc)))
        try:
            outcome = await self._post(request, body)
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
            # ValueError: aiohttp/yarl refusing a URL or header value; a result, not a crash.
            outcome = classify_exception(exc)
        outcome = self._redact_outcome(outcome)
        logger.debug("%s -> %s", request.endpoint, outcome)
        return outcome

    async def _post(self, request: KlaviyoRequest, body: bytes) -> Outcome:
        async with self._open_session().post(
            self.base_url + request.path,
            params=self._query(request),
            headers=self._auth_headers(request),
            data=body,
            allow_redirects=False,  # a redirect is unexpected, and must not carry our key away
        ) as response:
            answer = await response.read()
            retry_after = None
            if response.status == 429:
                # An HTTP-date Retry-After is wall-clock time, hence time.time() here.
                retry_after = parse_retry_after(response.headers.get("Retry-After"), time.time())
            return classify_response(response.status, response.headers, answer, retry_after=retry_after)

    def _open_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.pool_size),
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                headers={
                    "revision": self.revision,
                    "Content-Type": JSON_API,
                    "Accept": JSON_API,
                    "User-Agent": user_agent(),
                },
            )
        return self._session

    def _query(self, request: KlaviyoRequest) -> dict[str, str]:
        if request.auth == "public":
            return {"company_id": self._public_key.reveal()}
        return {}

    def _auth_headers(self, request: KlaviyoRequest) -> dict[str, str]:
        if request.auth == "private" and self._private_key:
            return {"Authorization": f"Klaviyo-API-Key {self._private_key.reveal()}"}
        return {}

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text

    def _redact_outcome(self, outcome: Outcome) -> Outcome:
        if isinstance(outcome, Throttled | Retryable | Permanent):
            return msgspec.structs.replace(outcome, detail=self._redact(outcome.detail))
        return outcome


def _checked_base_url(base_url: str, redact: Callable[[str], str]) -> str:
    """Return ``base_url`` without a trailing slash, or raise ConfigError (with keys redacted)."""
    problem = _base_url_problem(base_url)
    if problem:
        raise ConfigError([f"invalid base_url {redact(base_url)!r}: {problem}"])
    return base_url.rstrip("/")


def _base_url_problem(base_url: str) -> str | None:
    try:
        parts = urlsplit(base_url)
        parts.port  # noqa: B018 - parses the port, raising ValueError when it is malformed
    except ValueError:
        # The parser's message is dropped on purpose: it may quote the raw URL.
        return "not a URL with a valid host and port"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "need an absolute http(s) URL"
    if any(ch.isspace() or not ch.isprintable() for ch in base_url):
        return "must not contain whitespace or control characters"
    try:
        parts.hostname.encode("idna")
    except UnicodeError:
        return "invalid host name"
    if parts.query or parts.fragment or parts.username or parts.password:
        return "must not carry a query, fragment or credentials"
    return None

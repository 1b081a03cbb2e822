"""Bot Framework authentication, made safe to run on our event loop.

Incoming: botbuilder 4.17 validates the JWT correctly but raises arbitrary exceptions (a DecodeError,
a KeyError, an IndexError) on malformed or foreign tokens, and fetches the OpenID metadata with a
blocking `requests.get` that has no timeout. `GuardedAuthentication` turns away what is not even a JWT
before botbuilder sees it, runs botbuilder's validation in a small thread pool with a deadline, and
turns every failure into `PermissionError` (→ 401) or `AuthUnavailable` (→ 503).

Outgoing: botbuilder's password credentials fetch a new token from Entra with MSAL, blocking the loop,
for every connector it creates (each reply). `ClientSecretCredentials` gets the token with aiohttp
and keeps it until shortly before it expires.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import aiohttp
import structlog
from botbuilder.schema import Activity
from botframework.connector.auth import (
    AppCredentials,
    AuthenticateRequestResult,
    AuthenticationConstants,
    BotFrameworkAuthentication,
    ClaimsIdentity,
    ConnectorFactory,
    MicrosoftAppCredentials,
    ServiceClientCredentialsFactory,
    UserTokenClient,
)

log = structlog.get_logger(__name__)

DEFAULT_LOGIN_URL = "https://login.microsoftonline.com"
_EARLY_REFRESH_S = 300  # renew a token five minutes before it expires


class AuthUnavailable(Exception):
    """The token could not be checked in time (the OpenID metadata did not answer)."""


def is_jwt_shaped(token: str) -> bool:
    """Three base64url parts; a JSON header naming an allowed algorithm and a key id; a JSON payload
    with an issuer. Anything else cannot be a Bot Framework or Emulator token."""
    parts = token.split(".")
    if len(parts) != 3 or not all(parts):
        return False
    try:
        header = json.loads(_b64url(parts[0]))
        payload = json.loads(_b64url(parts[1]))
        _b64url(parts[2])
    except (ValueError, binascii.Error):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return False
    return (
        isinstance(header, dict)
        and isinstance(payload, dict)
        and header.get("alg") in AuthenticationConstants.ALLOWED_SIGNING_ALGORITHMS
        and isinstance(header.get("kid"), str)
        and isinstance(payload.get("iss"), str)
    )


def _b64url(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


class GuardedAuthentication(BotFrameworkAuthentication):
    """botbuilder's authentication, bounded in time and failing only with PermissionError/AuthUnavailable."""

    def __init__(
        self, inner: BotFrameworkAuthentication, *, enabled: bool, timeout: float, threads: int = 4
    ) -> None:
        self._inner = inner
        self._enabled = enabled
        self._timeout = timeout
        # Its own small pool: validations stuck on an unanswered metadata fetch can't starve the
        # default executor the engine's embedding uses.
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="teams-auth")

    def check_header(self, auth_header: str) -> None:
        """PermissionError unless the header could hold a valid token: the cheap check, made before the
        request's body is even read. Without an app id an absent header is fine (the Emulator)."""
        if not auth_header:
            if self._enabled:
                raise PermissionError("no Authorization header")
            return
        scheme, _, token = auth_header.partition(" ")
        if scheme != "Bearer" or not is_jwt_shaped(token):
            raise PermissionError("the Authorization header is not a Bearer JWT")

    async def authenticate_request(self, activity: Activity, auth_header: str) -> AuthenticateRequestResult:
        self.check_header(auth_header)
        if not auth_header:
            return await self._inner.authenticate_request(activity, auth_header)  # anonymous: no I/O
        loop = asyncio.get_running_loop()
        work = loop.run_in_executor(self._pool, _authenticate_blocking, self._inner, activity, auth_header)
        try:
            result: AuthenticateRequestResult = await asyncio.wait_for(work, self._timeout)
        except TimeoutError:
            raise AuthUnavailable(f"token validation took longer than {self._timeout:g} s") from None
        except PermissionError:
            raise
        except Exception as exc:  # botbuilder's way of saying "invalid token" varies by failure
            raise PermissionError(f"invalid token ({type(exc).__name__})") from exc
        return result

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    # The rest is botbuilder's, unchanged.
    async def authenticate_streaming_request(
        self, auth_header: str, channel_id_header: str
    ) -> AuthenticateRequestResult:
        raise PermissionError("streaming connections are not supported")

    def create_connector_factory(self, claims_identity: ClaimsIdentity) -> ConnectorFactory:
        return self._inner.create_connector_factory(claims_identity)

    async def create_user_token_client(self, claims_identity: ClaimsIdentity) -> UserTokenClient:
        return await self._inner.create_user_token_client(claims_identity)

    def get_originating_audience(self) -> str:
        return str(self._inner.get_originating_audience())

    async def authenticate_channel_request(self, auth_header: str) -> ClaimsIdentity:
        raise PermissionError("skill calls are not supported")


def _authenticate_blocking(
    inner: BotFrameworkAuthentication, activity: Activity, auth_header: str
) -> AuthenticateRequestResult:
    """Runs in a pool thread, on a loop of its own: botbuilder's metadata fetch blocks."""
    return asyncio.run(inner.authenticate_request(activity, auth_header))


class _BearerCredentials(AppCredentials):
    """Hands msrest a token already fetched (it calls `get_access_token` synchronously)."""

    def __init__(self, app_id: str, token: str) -> None:
        super().__init__(app_id=app_id)
        self._token = token

    def get_access_token(self, force_refresh: bool = False) -> str:
        return self._token


class ClientSecretCredentials(ServiceClientCredentialsFactory):
    """The bot's outgoing token by the client-credentials grant, fetched with aiohttp and cached.

    Multi-tenant bots ask the `botframework.com` tenant, single-tenant bots their own (PROTOCOL_NOTES §2).
    """

    def __init__(
        self,
        *,
        app_id: str | None,
        password: str | None,
        tenant_id: str | None = None,
        login_url: str = DEFAULT_LOGIN_URL,
        timeout: float = 10.0,
    ) -> None:
        self._app_id = app_id or ""
        self._password = password or ""
        tenant = tenant_id or AuthenticationConstants.DEFAULT_CHANNEL_AUTH_TENANT
        self._token_url = f"{login_url.rstrip('/')}/{tenant}/oauth2/v2.0/token"
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._tokens: dict[str, tuple[str, float]] = {}  # scope → (token, expiry on the monotonic clock)
        self._lock = asyncio.Lock()
        self._session: aiohttp.ClientSession | None = None

    async def is_valid_app_id(self, app_id: str) -> bool:
        return bool(self._app_id) and app_id == self._app_id

    async def is_authentication_disabled(self) -> bool:
        return not self._app_id

    async def create_credentials(
        self, app_id: str, oauth_scope: str, login_endpoint: str, validate_authority: bool
    ) -> Any:
        if not self._app_id:
            return MicrosoftAppCredentials.empty()  # no app id: local use, no token
        if app_id != self._app_id:
            raise PermissionError("credentials asked for another app id")
        scope = oauth_scope or AuthenticationConstants.TO_CHANNEL_FROM_BOT_OAUTH_SCOPE
        return _BearerCredentials(app_id, await self.token(scope))

    async def token(self, scope: str) -> str:
        """A token for `scope` (kept until five minutes before it expires). PermissionError when Entra
        refuses it; aiohttp's errors when Entra is out of reach or fails (HTTP 429, 5xx)."""
        async with self._lock:
            cached = self._tokens.get(scope)
            if cached and cached[1] > time.monotonic():
                return cached[0]
            token, lifetime = await self._fetch(scope)
            self._tokens[scope] = (token, time.monotonic() + max(lifetime - _EARLY_REFRESH_S, 30))
            return token

    def forget(self, scope: str) -> None:
        """Drop the token kept for `scope` (an API refused it): the next call fetches a new one."""
        self._tokens.pop(scope, None)

    async def _fetch(self, scope: str) -> tuple[str, float]:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        form = {
            "grant_type": "client_credentials",
            "client_id": self._app_id,
            "client_secret": self._password,
            "scope": scope if scope.endswith("/.default") else f"{scope.rstrip('/')}/.default",
        }
        async with self._session.post(self._token_url, data=form) as response:
            if response.status == 429 or response.status >= 500:  # Entra's trouble, not a refusal
                raise aiohttp.ClientResponseError(
                    response.request_info,
                    response.history,
                    status=response.status,
                    message="Entra's token endpoint failed",
                )
            body = await response.json(content_type=None)
        if response.status != 200 or not isinstance(body, dict) or "access_token" not in body:
            error = body.get("error", "") if isinstance(body, dict) else ""
            log.error("teams_token_refused", status=response.status, error=error)
            raise PermissionError(f"Entra refused the bot's token request (HTTP {response.status} {error})")
        return str(body["access_token"]), float(body.get("expires_in", 3600))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

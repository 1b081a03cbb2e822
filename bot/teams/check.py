"""`threadwise check`'s Teams line: Entra issues the bot a Bot Framework token for its credentials."""

from __future__ import annotations

from collections.abc import Sequence

from bot.platform import Check, Failed, Skipped, failure
from bot.settings import Settings
from bot.teams.auth import DEFAULT_LOGIN_URL, ClientSecretCredentials


def describe(settings: Settings) -> str:
    return "teams" if settings.microsoft_app_id else "teams (emulator only)"


def checks(settings: Settings, *, login_url: str = DEFAULT_LOGIN_URL) -> Sequence[tuple[str, Check]]:
    """`login_url`: Entra's login endpoint (tests point it at a fake)."""
    return [("teams", lambda: _credentials(settings, login_url))]


async def _credentials(settings: Settings, login_url: str) -> str:
    if not settings.microsoft_app_id:
        raise Skipped("MICROSOFT_APP_ID is not set: Teams is off, or local with the Bot Framework Emulator")
    if settings.microsoft_app_type == "UserAssignedMSI":
        raise Skipped("a managed identity gets its token on the Azure host: checked at the first reply")
    single = settings.microsoft_app_type == "SingleTenant"
    credentials = ClientSecretCredentials(
        app_id=settings.microsoft_app_id,
        password=settings.microsoft_app_password,
        tenant_id=settings.microsoft_app_tenant_id if single else None,
        login_url=login_url,
    )
    try:
        await credentials.create_credentials(settings.microsoft_app_id, "", "", True)
    except PermissionError as exc:
        raise Failed(
            f"{exc}: check MICROSOFT_APP_ID, MICROSOFT_APP_PASSWORD (a current client secret) "
            "and MICROSOFT_APP_TYPE / MICROSOFT_APP_TENANT_ID (Azure portal > the bot > Configuration)"
        ) from None
    except Exception as exc:
        raise Failed(f"cannot reach Microsoft Entra to get the bot's token ({failure(exc)})") from None
    finally:
        await credentials.close()
    return f"Entra issued a Bot Framework token for app {settings.microsoft_app_id}"

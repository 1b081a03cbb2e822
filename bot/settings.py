"""All configuration, read once from the environment (and `.env`), validated with actionable errors."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from rag.answer import DEFAULT_GROQ_MODEL
from rag.errors import ConfigError
from rag.extract import SUPPORTED_EXTENSIONS
from rag.redact import redact

CommaList = Annotated[list[str], NoDecode]
# Where Teams keeps the files users send a bot (SharePoint Online / OneDrive for Business), in the
# commercial, US government (GCC High, DoD), China and Microsoft-internal clouds.
DEFAULT_TEAMS_FILE_HOSTS = (
    "*.sharepoint.com",
    "*.sharepoint-df.com",
    "*.sharepoint.us",
    "*.sharepoint-mil.us",
    "*.sharepoint.cn",
)
DEFAULT_GRAPH_API_URL = "https://graph.microsoft.com"


class Settings(BaseSettings):
    """Every setting threadwise reads. Names are the environment variables, upper-cased."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    # HTTP service
    host: str = "0.0.0.0"
    port: int = Field(3978, ge=1, le=65535)
    environment: Literal["development", "production"] = "development"
    health_check_timeout: float = Field(2.0, gt=0, le=60)  # seconds each /ready dependency check may take
    http_header_timeout_seconds: float = Field(10.0, gt=0, le=30)  # a request's head must arrive in this

    # Slack
    slack_bot_token: str | None = None
    slack_signing_secret: str | None = None
    slack_app_token: str | None = None
    slack_api_url: str = "https://slack.com/api/"
    slack_thread_follow_ups: bool = True  # answer replies in a thread the bot is in, without a mention

    # Microsoft Teams
    microsoft_app_id: str | None = None
    microsoft_app_password: str | None = None
    microsoft_app_type: Literal["MultiTenant", "SingleTenant", "UserAssignedMSI"] = "MultiTenant"
    microsoft_app_tenant_id: str | None = None
    # hosts a Teams attachment may be downloaded from (https, public addresses only)
    teams_file_hosts: CommaList = Field(default_factory=lambda: list(DEFAULT_TEAMS_FILE_HOSTS))
    # Microsoft Graph, which reads the files posted in team channels and group chats
    graph_api_url: str = DEFAULT_GRAPH_API_URL

    # Answers
    llm_provider: Literal["groq", "extractive"] = "groq"
    groq_api_key: str | None = None
    groq_model: str = DEFAULT_GROQ_MODEL
    groq_base_url: str | None = None
    llm_timeout_seconds: float = Field(30.0, gt=0)
    llm_max_retries: int = Field(2, ge=0, le=10)

    # Retrieval
    search_top_k: int = Field(5, ge=1, le=50)
    search_min_similarity: float = Field(0.2, ge=-1.0, le=1.0)
    search_hybrid: bool = True
    chunk_max_tokens: int = Field(256, ge=32, le=256)

    # Storage
    chroma_persist_directory: str = "./data/chroma"
    chroma_host: str | None = None
    chroma_port: int = Field(8000, ge=1, le=65535)
    chroma_collection_name: str = Field("threadwise", pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{1,62}$")

    # Jobs and shared state
    runner: Literal["inprocess", "queue"] = "inprocess"
    redis_url: str | None = None
    worker_concurrency: int = Field(16, ge=1, le=256)  # jobs one `threadwise worker` runs at once
    job_timeout_seconds: int = Field(300, ge=1)  # a queued job's deadline (an ingest stops between batches)
    job_lease_seconds: int = Field(30, ge=2, le=600)  # a dead worker's job runs again this long after
    job_max_tries: int = Field(3, ge=1, le=20)
    job_retry_delay_seconds: float = Field(5.0, ge=0)  # doubled after each retry
    worker_shutdown_grace_seconds: int = Field(25, ge=0)  # SIGTERM: finish jobs this long, re-queue the rest
    worker_metrics_port: int = Field(3979, ge=0, le=65535)  # a worker's GET /metrics (on HOST); 0: none
    sweep_interval_seconds: int = Field(3600, ge=0)  # workers sweep killed ingests' passages; 0: at start

    # Uploads
    max_file_size_mb: float = Field(10.0, gt=0, le=1024)
    allowed_file_types: CommaList = Field(default_factory=lambda: sorted(SUPPORTED_EXTENSIONS))

    # Rate limits
    rate_limit_requests_per_minute: int = Field(60, ge=1)
    rate_limit_burst: int = Field(10, ge=1)

    # Caches
    embedding_cache_size: int = Field(5000, ge=0)
    # Questions' embeddings: onnx (ONNX Runtime on the same weights, exported once; torch if that
    # fails) or torch. Documents are always embedded with torch.
    embedding_query_runtime: Literal["onnx", "torch"] = "onnx"
    embedding_onnx_dir: str = ""  # where the export is kept; empty: <venv>/share/threadwise/onnx
    embedding_cache_ttl: int = Field(3600, ge=0)
    query_cache_size: int = Field(100, ge=0)
    query_cache_ttl: int = Field(1800, ge=0)
    query_cache_similarity_threshold: float = Field(0.95, gt=0, le=1.0)

    # Logging
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["console", "json"] = "console"
    log_file: str | None = None
    log_max_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    log_backup_count: int = Field(5, ge=0)

    # Backups
    backup_dir: str = "./data/backups"
    backup_schedule: str = "0 2 * * *"
    backup_retention_days: int = Field(30, ge=1)

    # Votes on answers and what each answer was (without REDIS_URL; with it they are kept in Redis)
    feedback_path: str = "./data/feedback.sqlite3"

    # People and knowledge bases
    admin_user_ids: CommaList = Field(default_factory=list)
    kb_aliases: CommaList = Field(default_factory=list)
    # Who may see a document sent to the bot in a direct message (the whole workspace, or only its
    # sender), and whether files shared with the bot in a channel are read (for that channel only).
    default_upload_scope: Literal["workspace", "private"] = "workspace"
    # How long the buttons under a direct-message upload wait for a choice before DEFAULT_UPLOAD_SCOPE
    # applies; meanwhile the new documents answer only their sender. 0: the default applies at once.
    upload_choice_minutes: float = Field(10.0, ge=0, le=24 * 60)  # a day at most: the buttons last a week
    channel_uploads: Literal["on", "off"] = "on"

    @field_validator("allowed_file_types", "admin_user_ids", "kb_aliases", "teams_file_hosts", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("backup_schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        from bot.cron import cron_trigger

        cron_trigger(value, timezone="UTC")  # raises ValueError saying what is wrong
        return value

    @field_validator("backup_dir")
    @classmethod
    def _outside_store(cls, value: str, info: ValidationInfo) -> str:
        # Inside the store, each backup would archive the older ones and a restore would delete them.
        store = info.data.get("chroma_persist_directory")
        if store and Path(value).resolve().is_relative_to(Path(store).resolve()):
            raise ValueError(
                f"it is inside CHROMA_PERSIST_DIRECTORY ({store}), so each backup would hold the older "
                "ones and a restore would delete them: choose a folder outside it, e.g. ./data/backups"
            )
        return value

    @field_validator("teams_file_hosts")
    @classmethod
    def _file_hosts(cls, value: list[str], info: ValidationInfo) -> list[str]:
        from bot.hosts import FileHosts

        hosts = FileHosts.parse(value)  # raises ValueError naming the entry
        if hosts.local_origins and info.data.get("environment") == "production":
            raise ValueError(
                "a loopback origin (http://127.0.0.1:PORT) is for tests only: ENVIRONMENT=production "
                "downloads Teams files over https from public hosts such as *.sharepoint.com"
            )
        return value

    @field_validator("graph_api_url")
    @classmethod
    def _graph_url(cls, value: str, info: ValidationInfo) -> str:
        """Graph's origin. The bot's Graph token is sent there: https, or for tests (not in production)
        an exact loopback origin such as http://127.0.0.1:8080."""
        from bot.hosts import FileHosts

        url = value.strip().rstrip("/")
        if re.fullmatch(r"https://[A-Za-z0-9.-]+(:\d+)?", url):
            return url
        try:
            local = bool(FileHosts.parse([url]).local_origins)
        except ValueError:
            local = False
        if local and info.data.get("environment") != "production":
            return url
        raise ValueError(
            "it must be Graph's https origin, without a path: https://graph.microsoft.com, or a national "
            "cloud's such as https://graph.microsoft.us (http://127.0.0.1:PORT is for tests, not production)"
        )

    @field_validator("allowed_file_types")
    @classmethod
    def _known_types(cls, value: list[str]) -> list[str]:
        types = [v.lower().lstrip(".") for v in value]
        unknown = sorted(set(types) - SUPPORTED_EXTENSIONS)
        if unknown:
            known = ", ".join(sorted(SUPPORTED_EXTENSIONS))
            raise ValueError(f"unsupported type(s) {', '.join(unknown)}; choose from {known}")
        return types

    @field_validator("kb_aliases")
    @classmethod
    def _aliases(cls, value: list[str]) -> list[str]:
        for pair in value:
            if pair.count("=") != 1 or not all(pair.split("=")):
                raise ValueError(f"{pair!r} is not WORKSPACE=KB (e.g. slack-T0123=acme,teams-4f1c…=acme)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.runner == "queue" and not self.redis_url:
            raise ValueError("RUNNER=queue needs REDIS_URL (e.g. redis://localhost:6379/0)")
        slack_http = self.slack_bot_token and not self.slack_app_token
        if self.environment == "production" and slack_http and not self.slack_signing_secret:
            raise ValueError(
                "ENVIRONMENT=production refuses unsigned Slack events: set SLACK_SIGNING_SECRET "
                "(Slack app > Basic Information), or SLACK_APP_TOKEN for Socket Mode"
            )
        self._teams_consistent()
        return self

    def _teams_consistent(self) -> None:
        """Teams credentials that would leave /api/messages open, or the bot unable to reply.

        The rule for ENVIRONMENT=production: Teams is served only with MICROSOFT_APP_ID (every request
        then needs a valid Bot Framework token), so a Slack-only deployment starts without any Teams
        setting; Teams settings without the app id are a mistake and stop start-up.
        """
        given = [
            name
            for name, value in (
                ("MICROSOFT_APP_PASSWORD", self.microsoft_app_password),
                ("MICROSOFT_APP_TENANT_ID", self.microsoft_app_tenant_id),
            )
            if value
        ]
        if not self.microsoft_app_id:
            if given:
                raise ValueError(
                    f"{' and '.join(given)} set without MICROSOFT_APP_ID would leave the Teams endpoint "
                    "unauthenticated: set MICROSOFT_APP_ID to the Azure Bot's Microsoft App ID "
                    "(Azure portal > the bot > Configuration), or unset the MICROSOFT_* variables"
                )
            return
        needs_secret = self.microsoft_app_type != "UserAssignedMSI"
        if needs_secret and not self.microsoft_app_password:
            raise ValueError(
                "MICROSOFT_APP_ID is set but MICROSOFT_APP_PASSWORD is not, so the bot could not reply in "
                "Teams: set it to a client secret of the app (Azure portal > the bot > Configuration > "
                "Manage Password)"
            )
        if self.microsoft_app_type != "MultiTenant" and not self.microsoft_app_tenant_id:
            raise ValueError(
                f"MICROSOFT_APP_TYPE={self.microsoft_app_type} needs MICROSOFT_APP_TENANT_ID, the "
                "Directory (tenant) ID of the app's Entra tenant"
            )

    # -- derived -----------------------------------------------------------------------------
    @property
    def max_file_bytes(self) -> int:
        return int(self.max_file_size_mb * 1024 * 1024)

    @property
    def teams_enabled(self) -> bool:
        """Serve Teams' /api/messages: authenticated with MICROSOFT_APP_ID; without it only outside
        production, for the Bot Framework Emulator (and then only to a loopback serviceUrl)."""
        return bool(self.microsoft_app_id) or self.environment != "production"

    def kb_for(self, workspace: str) -> str:
        """The knowledge base a workspace (`slack-T…`, `teams-…`, `local`) uses, after KB_ALIASES."""
        for pair in self.kb_aliases:
            source, target = pair.split("=")
            if source.strip() == workspace:
                return target.strip()
        return workspace


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment; a bad value raises ConfigError naming the variable and the fix."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        err = exc.errors()[0]
        message = str(err["msg"]).removeprefix("Value error, ")
        if not err["loc"]:
            raise ConfigError(f"{message}.") from None
        name = str(err["loc"][0]).upper()
        given = err.get("input")
        secret = any(word in name for word in ("TOKEN", "SECRET", "PASSWORD", "KEY"))
        shown = f"={redact(repr(given))}" if isinstance(given, str | int | float) and not secret else ""
        raise ConfigError(f"{name}{shown} is not valid: {message}.") from None

"""Settings from the environment: defaults, and one actionable line for each bad value."""

from __future__ import annotations

import pytest

from bot.cli import main
from bot.settings import load_settings
from rag.errors import ConfigError
from rag.extract import SUPPORTED_EXTENSIONS


def config_error(monkeypatch: pytest.MonkeyPatch, **env: str) -> str:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert "\n" not in message, "a configuration error is one line"
    return message


def test_defaults_load_with_an_empty_environment(clean_env: pytest.MonkeyPatch) -> None:
    settings = load_settings()

    assert settings.port == 3978
    assert settings.runner == "inprocess"
    assert settings.llm_provider == "groq"
    assert settings.max_file_bytes == 10 * 1024 * 1024
    assert set(settings.allowed_file_types) == SUPPORTED_EXTENSIONS
    assert settings.admin_user_ids == []
    assert settings.kb_for("slack-T1") == "slack-T1"


def test_rate_limit_and_cache_defaults_follow_the_deployment_guide(clean_env: pytest.MonkeyPatch) -> None:
    settings = load_settings()

    assert (settings.rate_limit_requests_per_minute, settings.rate_limit_burst) == (60, 10)
    assert (settings.embedding_cache_size, settings.embedding_cache_ttl) == (5000, 3600)
    assert (settings.query_cache_size, settings.query_cache_ttl) == (100, 1800)
    assert settings.query_cache_similarity_threshold == 0.95


def test_a_dotenv_file_in_the_working_directory_is_read(clean_env: pytest.MonkeyPatch) -> None:
    with open(".env", "w") as env:
        env.write("LLM_PROVIDER=extractive\nRATE_LIMIT_BURST=2\n")

    settings = load_settings()

    assert settings.llm_provider == "extractive"
    assert settings.rate_limit_burst == 2


def test_a_number_that_is_not_a_number_names_the_variable(clean_env: pytest.MonkeyPatch) -> None:
    message = config_error(clean_env, MAX_FILE_SIZE_MB="abc")

    assert message.startswith("MAX_FILE_SIZE_MB='abc' is not valid")
    assert "number" in message


def test_an_unknown_llm_provider_names_the_allowed_values(clean_env: pytest.MonkeyPatch) -> None:
    message = config_error(clean_env, LLM_PROVIDER="foo")

    assert message.startswith("LLM_PROVIDER='foo'")
    assert "'groq'" in message and "'extractive'" in message


def test_the_queue_runner_without_redis_says_what_to_set(clean_env: pytest.MonkeyPatch) -> None:
    message = config_error(clean_env, RUNNER="queue")

    assert "RUNNER=queue needs REDIS_URL" in message
    assert "redis://" in message  # an example of what to write


def test_the_queue_runner_with_redis_is_accepted(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("RUNNER", "queue")
    clean_env.setenv("REDIS_URL", "redis://localhost:6379/0")

    assert load_settings().runner == "queue"


def test_an_unsupported_file_type_is_named(clean_env: pytest.MonkeyPatch) -> None:
    message = config_error(clean_env, ALLOWED_FILE_TYPES="pdf,exe")

    assert message.startswith("ALLOWED_FILE_TYPES")
    assert "unsupported type(s) exe;" in message


def test_allowed_file_types_are_normalised(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("ALLOWED_FILE_TYPES", " PDF, .md ,txt")

    assert load_settings().allowed_file_types == ["pdf", "md", "txt"]


def test_kb_aliases_map_workspaces_onto_one_knowledge_base(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("KB_ALIASES", "slack-T1=acme, teams-9f2=acme")

    settings = load_settings()

    assert settings.kb_for("slack-T1") == "acme"
    assert settings.kb_for("teams-9f2") == "acme"
    assert settings.kb_for("slack-T2") == "slack-T2"


def test_a_malformed_kb_alias_shows_the_expected_form(clean_env: pytest.MonkeyPatch) -> None:
    message = config_error(clean_env, KB_ALIASES="slack-T1")

    assert message.startswith("KB_ALIASES")
    assert "WORKSPACE=KB" in message


def test_admin_user_ids_are_split_on_commas_and_trimmed(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("ADMIN_USER_IDS", "U1, U2,,")

    assert load_settings().admin_user_ids == ["U1", "U2"]


def test_secrets_are_never_echoed_in_an_error(clean_env: pytest.MonkeyPatch) -> None:
    # The whole-configuration check sees every value, tokens included; none may reach the message.
    message = config_error(
        clean_env,
        RUNNER="queue",
        SLACK_BOT_TOKEN="xoxb-1111-secret-bot-token",
        GROQ_API_KEY="gsk_secret_groq_key",
        MICROSOFT_APP_PASSWORD="secret-app-password",
    )
    assert "secret" not in message

    with pytest.raises(ConfigError) as caught:
        load_settings(groq_api_key=987654321)  # a wrong-typed secret names the setting, not the value
    assert str(caught.value).startswith("GROQ_API_KEY is not valid")
    assert "987654321" not in str(caught.value)


def test_the_command_stops_with_exit_code_2_and_one_line(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clean_env.setenv("MAX_FILE_SIZE_MB", "abc")

    code = main(["docs"])

    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    assert err.startswith("threadwise: MAX_FILE_SIZE_MB")
    assert err.count("\n") == 1
    assert "Traceback" not in err


# -- Teams: when /api/messages is served, and with what -------------------------------------------


def test_production_serves_teams_only_with_an_app_id(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("ENVIRONMENT", "production")
    assert not load_settings().teams_enabled  # a Slack-only deployment starts, without /api/messages

    clean_env.setenv("MICROSOFT_APP_ID", "aabdbd62-bc97-4afb-83ee-575594577de5")
    clean_env.setenv("MICROSOFT_APP_PASSWORD", "secret-app-password")
    assert load_settings().teams_enabled


def test_development_serves_teams_without_an_app_id_for_the_emulator(clean_env: pytest.MonkeyPatch) -> None:
    assert load_settings().teams_enabled


def test_teams_secrets_without_an_app_id_stop_start_up(clean_env: pytest.MonkeyPatch) -> None:
    message = config_error(clean_env, ENVIRONMENT="production", MICROSOFT_APP_PASSWORD="secret-app-password")

    assert "MICROSOFT_APP_PASSWORD set without MICROSOFT_APP_ID" in message
    assert "unauthenticated" in message
    assert "secret-app-password" not in message


def test_an_app_id_without_a_password_says_where_to_get_one(clean_env: pytest.MonkeyPatch) -> None:
    message = config_error(clean_env, MICROSOFT_APP_ID="aabdbd62-bc97-4afb-83ee-575594577de5")

    assert "MICROSOFT_APP_PASSWORD is not" in message
    assert "Manage Password" in message


def test_a_single_tenant_bot_needs_its_tenant(clean_env: pytest.MonkeyPatch) -> None:
    message = config_error(
        clean_env,
        MICROSOFT_APP_ID="aabdbd62-bc97-4afb-83ee-575594577de5",
        MICROSOFT_APP_PASSWORD="secret-app-password",
        MICROSOFT_APP_TYPE="SingleTenant",
    )

    assert message.startswith("MICROSOFT_APP_TYPE=SingleTenant needs MICROSOFT_APP_TENANT_ID")


@pytest.mark.parametrize(
    "url",
    [
        "http://graph.microsoft.com",
        "https://graph.microsoft.com/v1.0",
        "graph.microsoft.com",
        "http://10.0.0.5:80",
    ],
)
def test_graph_api_url_must_be_an_https_origin(clean_env: pytest.MonkeyPatch, url: str) -> None:
    # The bot's Graph token is sent there.
    message = config_error(clean_env, GRAPH_API_URL=url)

    assert message.startswith("GRAPH_API_URL=") and "https://graph.microsoft.com" in message


def test_graph_api_url_takes_a_national_cloud_and_a_loopback_origin_only_outside_production(
    clean_env: pytest.MonkeyPatch,
) -> None:
    clean_env.setenv("GRAPH_API_URL", "https://graph.microsoft.us/")
    assert load_settings().graph_api_url == "https://graph.microsoft.us"
    clean_env.setenv("GRAPH_API_URL", "http://127.0.0.1:8080")
    assert load_settings().graph_api_url == "http://127.0.0.1:8080"

    message = config_error(clean_env, ENVIRONMENT="production")
    assert message.startswith("GRAPH_API_URL=") and "not production" in message


@pytest.mark.parametrize("minutes", ["-1", "1441", "soon"])
def test_an_upload_choice_wait_below_zero_or_over_a_day_is_refused(
    clean_env: pytest.MonkeyPatch, minutes: str
) -> None:
    assert config_error(clean_env, UPLOAD_CHOICE_MINUTES=minutes).startswith("UPLOAD_CHOICE_MINUTES")


def test_an_upload_choice_wait_of_zero_applies_the_default_at_once(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("UPLOAD_CHOICE_MINUTES", "0")
    assert load_settings().upload_choice_minutes == 0

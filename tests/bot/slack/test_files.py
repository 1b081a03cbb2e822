"""Documents shared with the bot: checked from metadata, downloaded with the bot token, ingested,
confirmed in the thread — or refused there with the reason."""

from __future__ import annotations

import pytest
import structlog
from aiohttp import web

from bot.core import text
from bot.core.model import FileRef
from bot.slack.files import SlackDownloadError, SlackFileFetcher
from rag.errors import RetryableError, UserFacingError
from tests.bot.slack import payloads
from tests.bot.slack.conftest import HOLIDAYS, KB, VPN_GUIDE, SlackHarness
from tests.fakes.local_server import LocalServer
from tests.fakes.slack_server import FakeSlack


async def _documents(slack: SlackHarness) -> dict[str, str | None]:
    return {d.name: d.url for d in await slack.engine.documents(KB)}


async def test_a_file_sent_in_the_dm_is_downloaded_with_the_token_added_and_confirmed(
    slack: SlackHarness,
) -> None:
    shared = slack.fake.add_file("vpn.md", VPN_GUIDE, mimetype="text/markdown")
    body = payloads.dm_file_share([shared])

    assert (await slack.send(body)).status == 200
    await slack.settle()

    assert slack.fake.downloads == [(shared["id"], True)]
    (placeholder,) = slack.posts()
    assert placeholder["text"] == text.READING.format(names="vpn.md")
    assert placeholder["thread_ts"] == body["event"]["ts"]
    (message,) = slack.fake.thread(payloads.DM, body["event"]["ts"])
    assert message["text"].startswith("✅ Added *vpn.md*: ")
    assert "passage" in message["text"]
    assert " s. Everyone in the workspace can ask about it." in message["text"]
    # The Slack permalink is kept, so answers can link to the file.
    assert await _documents(slack) == {"vpn.md": shared["permalink"]}
    info = await slack.engine.document(KB, "vpn.md")
    assert info is not None and info.uploader == payloads.USER


async def test_two_files_in_one_message_are_both_added_and_reported_together(slack: SlackHarness) -> None:
    files = [slack.fake.add_file("vpn.md", VPN_GUIDE), slack.fake.add_file("holidays.md", HOLIDAYS)]
    body = payloads.dm_file_share(files, text="two guides")

    await slack.send(body)
    await slack.settle()

    assert [ok for _, ok in slack.fake.downloads] == [True, True]
    assert slack.posts()[0]["text"] == text.READING.format(names="vpn.md, holidays.md")
    (message,) = slack.fake.thread(payloads.DM, body["event"]["ts"])
    assert "Added *vpn.md*" in message["text"] and "Added *holidays.md*" in message["text"]
    assert sorted(await _documents(slack)) == ["holidays.md", "vpn.md"]


async def test_a_rejected_file_gets_its_reason_in_the_thread_and_is_never_downloaded(
    slack: SlackHarness,
) -> None:
    # The file of events/message_file_share_channel.json, sent to the bot.
    image = slack.fake.add_file("file.png", b"\x89PNG\r\n\x1a\n" + bytes(range(256)), mimetype="image/png")
    body = payloads.dm_file_share([image], text="Hi there!")

    await slack.send(body)
    await slack.settle()

    assert slack.fake.downloads == []  # refused from the metadata alone
    (message,) = slack.fake.thread(payloads.DM, body["event"]["ts"])
    assert message["text"].startswith("⚠️ file.png: .png files are not supported.")
    assert await _documents(slack) == {}


async def test_one_bad_file_does_not_stop_the_good_one(slack: SlackHarness) -> None:
    files = [slack.fake.add_file("setup.exe", b"MZ\x90\x00"), slack.fake.add_file("vpn.md", VPN_GUIDE)]
    body = payloads.dm_file_share(files)

    await slack.send(body)
    await slack.settle()

    (message,) = slack.fake.thread(payloads.DM, body["event"]["ts"])
    assert "Added *vpn.md*" in message["text"]
    assert "⚠️ setup.exe: .exe files are not supported" in message["text"]


async def test_a_file_shared_with_a_mention_in_a_channel_is_added(slack: SlackHarness) -> None:
    shared = slack.fake.add_file("vpn.md", VPN_GUIDE)
    body = payloads.app_mention("here is the VPN guide", files=[shared])

    await slack.send(body)
    await slack.settle()

    assert list(await _documents(slack)) == ["vpn.md"]
    (message,) = slack.fake.thread(payloads.CHANNEL, body["event"]["ts"])
    assert message["text"].startswith("✅ Added *vpn.md*")


async def test_a_file_in_a_channel_thread_without_a_mention_is_left_alone(slack: SlackHarness) -> None:
    first = payloads.app_mention("How do I rotate the VPN certificate?")
    await slack.send(first)
    await slack.settle()
    reply = payloads.channel_message("the guide, for you all", thread_ts=first["event"]["ts"])
    reply["event"].update(subtype="file_share", files=[slack.fake.add_file("vpn.md", VPN_GUIDE)])

    await slack.send(reply)
    await slack.settle()

    assert slack.fake.downloads == []
    assert len(slack.posts()) == 1  # only the first question's placeholder
    assert await _documents(slack) == {}


async def test_an_html_login_page_instead_of_the_file_is_refused_with_an_apology_and_a_log(
    slack: SlackHarness,
) -> None:
    slack.fake.serve_login_page = True  # what Slack does when the token lacks files:read
    body = payloads.dm_file_share([slack.fake.add_file("vpn.md", VPN_GUIDE)], event_id="EvLOGINPAGE0001")

    with structlog.testing.capture_logs() as logs:
        await slack.send(body)
        await slack.settle()

    (message,) = slack.fake.thread(payloads.DM, body["event"]["ts"])
    assert message["text"] == "⚠️ " + text.FILE_FAILED.format(name="vpn.md", ref="EvLOGINPAGE0")
    assert await _documents(slack) == {}
    failed = [e for e in logs if e["event"] == "ingest_failed"]
    assert failed and failed[0]["job_id"] == "EvLOGINPAGE0001"


async def test_a_slack_connect_file_without_details_is_looked_up_with_files_info(slack: SlackHarness) -> None:
    shared = slack.fake.add_file("vpn.md", VPN_GUIDE)
    bare = {"id": shared["id"], "mode": "file_access", "file_access": "check_file_info", "created": 0}
    body = payloads.dm_file_share([bare])

    await slack.send(body)
    await slack.settle()

    assert [c.params["file"] for c in slack.fake.calls_to("files.info")] == [shared["id"]]
    assert list(await _documents(slack)) == ["vpn.md"]


# -- the fetcher on its own, against the fake's file server -----------------------------------------


async def test_the_fetcher_stops_reading_past_the_size_limit() -> None:
    async with FakeSlack() as fake:
        shared = fake.add_file("big.txt", b"x" * 200_000)
        fetcher = _fetcher(fake)
        # The metadata understates the size: the stream is cut at the limit all the same.
        ref = FileRef(name="big.txt", size=10, url=shared["url_private_download"], id=shared["id"])
        try:
            raised = None
            try:
                await fetcher.fetch(ref, max_bytes=100_000)
            except UserFacingError as exc:
                raised = exc
            assert raised is not None
            assert raised.message == text.FILE_TOO_LARGE.format(name="big.txt", limit="97.7 KB")
            assert await fetcher.fetch(ref, max_bytes=300_000) == b"x" * 200_000
        finally:
            await fetcher.close()


async def test_the_fetcher_never_sends_the_token_to_another_host() -> None:
    async with FakeSlack() as fake:
        fetcher = _fetcher(fake)
        try:
            for url in (
                "https://evil.example.com/files-pri/T1-F1/download/x.md",
                "http://files.slack.com/x.md",
            ):
                raised = None
                try:
                    await fetcher.fetch(FileRef(name="x.md", size=1, url=url), max_bytes=1000)
                except SlackDownloadError as exc:
                    raised = exc
                assert raised is not None and "refusing" in str(raised)
            assert fake.downloads == []
        finally:
            await fetcher.close()


class Flaky(LocalServer):
    """A file host on 127.0.0.1 that answers every download with `status`."""

    def __init__(self, status: int) -> None:
        super().__init__()
        self.status = status

    def routes(self, app: web.Application) -> None:
        async def answer(_: web.Request) -> web.Response:
            return web.Response(status=self.status, text="busy")

        app.router.add_get("/{tail:.*}", answer)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self._port}/files-pri/T1-F1/{name}"


@pytest.mark.parametrize("status", [429, 503])
async def test_a_download_slack_cannot_serve_now_is_the_networks_fault_and_retried(status: int) -> None:
    # The FileFetcher contract: RetryableError (a queue worker tries again later), like Teams' downloads.
    async with FakeSlack() as fake, Flaky(status) as host:
        fetcher = _fetcher(fake)  # the Web API's host (127.0.0.1) is trusted with the token
        try:
            with pytest.raises(RetryableError):
                await fetcher.fetch(FileRef(name="x.md", size=1, url=host.url("x.md")), max_bytes=1000)
        finally:
            await fetcher.close()


async def test_a_download_from_a_host_that_does_not_answer_is_retried() -> None:
    async with FakeSlack() as fake:
        fetcher = _fetcher(fake)
        url = "http://127.0.0.1:9/files-pri/T1-F1/x.md"  # the Web API's host; nothing listens on port 9
        try:
            with pytest.raises(RetryableError):
                await fetcher.fetch(FileRef(name="x.md", size=1, url=url), max_bytes=1000)
        finally:
            await fetcher.close()


def _fetcher(fake: FakeSlack) -> SlackFileFetcher:
    from slack_sdk.web.async_client import AsyncWebClient

    client = AsyncWebClient(token=fake.bot_token, base_url=fake.api_url)
    return SlackFileFetcher(token=fake.bot_token, client=client, api_url=fake.api_url)

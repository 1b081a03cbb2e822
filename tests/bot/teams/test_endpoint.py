"""Teams end to end: activities POSTed to /api/messages, replies read back from the fake Bot Connector.

No app id here (the Bot Framework Emulator set-up): authentication has its own file, test_auth.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence

from bot.core import text
from bot.core.handlers import JobHandler
from bot.core.model import Job
from bot.core.state import MemoryThreadMemory
from bot.teams import text as teams_text
from bot.teams.outbound import TeamsOutbound
from bot.teams.translate import Message, event_id, translate
from rag.answer import DeltaCallback
from rag.prompt import citations_for
from rag.types import Answer, Passage, Turn
from tests.bot.scrape import scrape
from tests.bot.teams.activities import (
    CHANNEL,
    GROUP_CHAT,
    PERSONAL_CONVERSATION,
    TEAM,
    bot_added_personal,
    bot_added_to_team,
    channel_mention,
    emulator,
    feedback_invoke,
    file_attachment,
    group_chat_mention,
    inline_image,
    member_removed,
    personal_file_upload,
    personal_message,
)
from tests.bot.teams.conftest import KB, VPN_GUIDE, TeamsBotFactory
from tests.fakes.bot_connector import FakeBotConnector

QUESTION = "How do I rotate the VPN certificate?"


class ScriptedAnswerer:
    """Answers `reply` (streaming `stream` first, `pace` s apart), citing the first passage it is given;
    records questions."""

    def __init__(
        self, reply: str = "Open the Keychain app [1].", *, stream: Sequence[str] = (), pace: float = 0.0
    ) -> None:
        self.reply = reply
        self.stream = stream
        self.pace = pace
        self.questions: list[str] = []

    async def answer(
        self,
        question: str,
        passages: Sequence[Passage],
        *,
        history: Sequence[Turn] = (),
        on_delta: DeltaCallback | None = None,
    ) -> Answer:
        self.questions.append(question)
        for n, partial in enumerate(self.stream):
            if n and self.pace:
                await asyncio.sleep(self.pace)
            if on_delta is not None:
                await on_delta(partial)
        return Answer(self.reply, citations_for(passages[:1]), "llm")


def _card(call_body: dict) -> dict:
    (attachment,) = call_body["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    return attachment["content"]


# -- questions ------------------------------------------------------------------------------------


async def test_a_channel_mention_is_answered_in_its_thread_with_the_mention_stripped(
    make_teams_bot: TeamsBotFactory, fake: FakeBotConnector
) -> None:
    answerer = ScriptedAnswerer()
    bot = await make_teams_bot(answerer=answerer)
    await bot.engine.ingest(KB, "vpn.md", VPN_GUIDE, uploader="someone")
    activity = channel_mention(QUESTION, service_url=fake.service_url, root="1759881511856")

    response = await bot.post(activity)

    assert response.status == 200
    assert answerer.questions == [QUESTION]  # "<at>threadwise</at>" is gone
    typing, answer = fake.calls
    thread = f"{CHANNEL};messageid=1759881511856"
    for call in (typing, answer):
        assert call.method == "POST"
        assert call.conversation_id == thread  # the thread, never the channel root
        assert call.activity_id == activity["id"]  # POST …/activities/{the question's id}
        assert call.body["replyToId"] == activity["id"]
        assert call.body["conversation"]["id"] == thread
    assert typing.type == "typing"
    assert answer.type == "message"
    assert answer.text == "Open the Keychain app [1]."
    assert answer.body["textFormat"] == "markdown"
    assert answer.body["from"]["id"] == activity["recipient"]["id"]
    assert answer.body["recipient"]["id"] == activity["from"]["id"]
    assert {"type": "https://schema.org/Message", "additionalType": ["AIGeneratedContent"]}.items() <= (
        answer.body["entities"][0].items()
    )


async def test_the_answer_cites_file_and_section_with_teams_citations_and_the_feedback_loop(
    make_teams_bot: TeamsBotFactory, fake: FakeBotConnector
) -> None:
    bot = await make_teams_bot(answerer=ScriptedAnswerer())
    await bot.engine.ingest(KB, "vpn.md", VPN_GUIDE, url="https://contoso.sharepoint.com/docs/vpn.md")
    activity = channel_mention(QUESTION, service_url=fake.service_url)

    await bot.post(activity)

    answer = fake.activities("POST", type="message")[-1]
    assert "attachments" not in answer.body  # Teams shows its own citations and 👍/👎: no card
    assert answer.body["channelData"] == {"feedbackLoopEnabled": True}
    (entity,) = answer.body["entities"]
    (claim,) = entity["citation"]
    assert claim["position"] == 1
    assert claim["appearance"]["name"] == "vpn.md"
    assert claim["appearance"]["url"] == "https://contoso.sharepoint.com/docs/vpn.md"
    abstract = claim["appearance"]["abstract"]
    assert "To rotate the VPN certificate, open the Keychain app" in abstract and len(abstract) <= 160


async def test_in_the_emulator_the_answer_cites_file_and_section_in_a_card_with_feedback_buttons(
    make_teams_bot: TeamsBotFactory, fake: FakeBotConnector
) -> None:
    bot = await make_teams_bot(answerer=ScriptedAnswerer())
    await bot.engine.ingest(KB, "vpn.md", VPN_GUIDE, url="https://contoso.sharepoint.com/docs/vpn.md")
    activity = emulator(personal_message(QUESTION, service_url=fake.service_url))

    await bot.post(activity)

    answer = fake.activities("POST", type="message")[-1]
    card = _card(answer.body)
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.4"
    lines = [block["text"] for block in card["body"]]
    assert lines == [
        text.SOURCES_TITLE,
        "[1] [vpn.md](https://contoso.sharepoint.com/docs/vpn.md) — VPN guide",
    ]
    up, down = card["actions"]
    assert (up["type"], up["title"], up["data"]) == (
        "Action.Execute",
        text.FEEDBACK_UP,
        {"threadwise": "feedback", "vote": "up", "ref": event_id(activity)},  # the answer's Reply.ref
    )
    assert down["data"]["vote"] == "down"
    assert "channelData" not in answer.body
    assert all(e.get("type") != "streaminfo" for c in fake.calls for e in c.body.get("entities") or ())


async def test_a_new_channel_post_is_answered_under_it_not_in_the_channel(
    make_teams_bot: TeamsBotFactory, fake: FakeBotConnector
) -> None:
    bot = await make_teams_bot(answerer=ScriptedAnswerer())
    activity = channel_mention(QUESTION, service_url=fake.service_url, root=None)

    await bot.post(activity)

    assert {c.conversation_id for c in fake.calls} == {f"{CHANNEL};messageid={activity['id']}"}
    assert all(c.activity_id == activity["id"] for c in fake.calls)


async def test_a_group_chat_mention_and_every_personal_message_are_answered(
    make_teams_bot: TeamsBotFactory, fake: FakeBotConnector
) -> None:
    answerer = ScriptedAnswerer()
    bot = await make_teams_bot(answerer=answerer)
    await bot.engine.ingest(KB, "vpn.md", VPN_GUIDE)

    await bot.post(group_chat_mention("Where is the IT portal?", service_url=fake.service_url))
    await bot.post(personal_message(QUESTION, service_url=fake.service_url))

    assert answerer.questions == ["Where is the IT portal?", QUESTION]
    answers = fake.activities("POST", type="message")
    assert [a.conversation_id for a in answers] == [GROUP_CHAT, PERSONAL_CONVERSATION]


async def test_a_channel_message_without_a_mention_is_ignored_unless_the_bot_is_in_the_thread(
    make_teams_bot: TeamsBotFactory, fake: FakeBotConnector
) -> None:
    # Teams only delivers unmentioned channel messages to bots with RSC permissions; then a follow-up
    # in a thread the bot answered needs no mention, like Slack.
    answerer = ScriptedAnswerer()
    bot = await make_teams_bot(answerer=answerer)
    await bot.engine.ingest(KB, "vpn.md", VPN_GUIDE)

    stray = await bot.post(channel_mention("lunch?", service_url=fake.service_url, root="1", mentioned=False))
    await bot.post(channel_mention(QUESTION, service_url=fake.service_url, root="2"))
    await bot.post(channel_mention("And on Linux?", service_url=fake.service_url, root="2", mentioned=False))

    assert stray.status == 200
    assert answerer.questions == [QUESTION, "And on Linux?"]
    history = await bot.chat.memory.history(f"teams:{CHANNEL};messageid=2")
    assert [t.text for t in history][::2] == [QUESTION, "And on Linux?"]


async def test_in_the_emulator_a_streamed_answer_is_posted_then_edited_in_place(
    make_teams_bot: TeamsBotFactory, fake: FakeBotConnector
) -> None:
    bot = await make_teams_bot(answerer=ScriptedAnswerer("Open the Keychain app [1].", stream=["Open the"]))
    await bot.engine.ingest(KB, "vpn.md", VPN_GUIDE)
    activity = emulator(personal_message(QUESTION, service_url=fake.service_url))

    await bot.post(activity)

    typing, partial, final = fake.calls
    assert typing.type == "typing" and typing.stream is None
    assert (partial.method, partial.text) == ("POST", "Open the ▌")
    assert partial.activity_id == activity["id"]
    assert final.method == "PUT"
    assert final.activity_id == partial.response_id
    assert final.text == "Open the Keychain app [1]."
    assert final.body["attachments"]  # the sources card arrives with the final text


async def test_a_long_answer_is_split_into_messages_in_the_thread(
    make_teams_bot: TeamsBotFactory, fake: FakeBotConnector
) -> None:
    paragraph = "The certificate rotates every ninety days and the portal explains each step. " * 30
    long_answer = "\n\n".join(f"{n}. {paragraph}" for n in range(1, 8)) + " [1]"
    bot = await make_teams_bot(answerer=ScriptedAnswerer(long_answer))
    await bot.engine.ingest(KB, "vpn.md", VPN_GUIDE)
    activity = channel_mention(QUESTION, service_url=fake.service_url)

    await bot.post(activity)

    messages = fake.activities("POST", type="message")
    assert len(messages) >= 3
    assert all(len(m.text) <= 6000 for m in messages)
    assert " ".join(m.text for m in messages).split() == long_answer.split()
    assert all(m.activity_id == activity["id"] for m in messages)
    loop = [bool(m.body.get("channelData", {}).get("feedbackLoopEnabled")) for m in messages]
    assert loop == [False] * (len(messages) - 1) + [True]  # 👍/👎 under the end of the answer
    assert [c["position"] for c in messages[-1].body["entities"][0]["citation"]] == [1]


# -- commands ---------------------------------------------------------------------------------------


async def test_commands_arrive_as_text_after_the_mention(
    make_teams_bot: TeamsBotFactory, fake: FakeBotConnector
) -> None:
    bot = await make_teams_bot()
    await bot.engine.ingest(KB, "vpn.md", VPN_GUIDE, uploader="someone")

    await bot.post(channel_mention("help", service_url=fake.service_url))
    await bot.post(channel_mention("docs", service_url=fake.service_url))
    await bot.post(channel_mention("forget vpn.md", service_url=fake.service_url))

    help_reply, docs_reply, forget_reply = (c.text for c in fake.activities("POST", type="message"))
    assert teams_text.ASK_HOW in help_reply
    assert "`vpn.md`" in docs_reply  # as code: exactly as `forget` takes it
    assert forget_reply.startswith("Only the person who uploaded **vpn.md**")
    assert fake.activities(type="typing") == []  # commands answer at once


# -- files ----------------------------------------------------------------------------------------


async def test_a_file_sent_in_personal_chat_is_downloaded_without_a_token_ingested_and_confirmed(
    make_teams_bot: TeamsBotFactory, fake: FakeBotConnector
) -> None:
    bot = await make_teams_bot(answerer=ScriptedAnswerer())
    url = fake.add_file("vpn.md", VPN_GUIDE)
    upload = personal_file_upload("vpn.md", url, service_url=fake.service_url)

    await bot.post(upload)

    (download,) = fake.downloads
    assert "authorization" not in download
    typing, confirmation = fake.calls
    assert typing.type == "typing"
    assert confirmation.conversation_id == PERSONAL_CONVERSATION
    assert confirmation.activity_id == upload["id"]
    assert confirmation.text.startswith("✅ Added **vpn.md**: 1 passage")
    (document,) = await bot.engine.documents(KB)
    assert (document.name, document.url) == ("vpn.md", upload["attachments"][0]["contentUrl"])
    assert document.uploader == upload["from"]["aadObjectId"]

    await bot.post(personal_message(QUESTION, service_url=fake.service_url))

    (claim,) = fake.activities("POST", type="message")[-1].body["entities"][0]["citation"]
    assert claim["appearance"]["url"] == upload["attachments"][0]["contentUrl"]


async def test_an_expired_download_link_asks_for_the_file_again(
    make_teams_bot: TeamsBotFactory, fake: FakeBotConnector
) -> None:
    bot = await make_teams_bot()
    url = fake.add_file("vpn.md", VPN_GUIDE)
    fake.expire_file(url, status=403)

    await bot.post(personal_file_upload("vpn.md", url, service_url=fake.service_url))

    reply = fake.activities("POST", type="message")[-1]
    assert reply.text == "⚠️ " + teams_text.FILE_LINK_EXPIRED.format(name="vpn.md")
    assert await bot.engine.documents(KB) == []


async def test_unsupported_and_oversized_files_are_refused_with_the_reason(
    make_teams_bot: TeamsBotFactory, fake: FakeBotConnector
) -> None:
    bot = await make_teams_bot(max_bytes=1024)
    big = fake.add_file("handbook.md", b"# Handbook\n\n" + b"All about us. " * 200)
    tool = fake.add_file("setup.exe", b"MZ\x90\x00")
    files = [file_attachment("setup.exe", tool), file_attachment("handbook.md", big)]

    await bot.post(personal_message("", service_url=fake.service_url, attachments=files))

    reply = fake.activities("POST", type="message")[-1].text
    assert "setup.exe: .exe files are not supported" in reply
    assert text.FILE_TOO_LARGE.format(name="handbook.md", limit="1 KB") in reply
    assert len(fake.downloads) == 1  # the .exe was refused by its name, before any download
    assert await bot.engine.documents(KB) == []


async def test_a_pasted_image_gets_a_clear_reply(
    make_teams_bot: TeamsBotFactory, fake: FakeBotConnector
) -> None:
    # (Files posted in a channel with a mention are read: tests/bot/teams/test_channel_files.py.)
    bot = await make_teams_bot()
    image = personal_message("", service_url=fake.service_url, attachments=[inline_image(fake.service_url)])

    await bot.post(image)

    (image_reply,) = fake.activities("POST", type="message")
    assert image_reply.text == teams_text.INLINE_IMAGE
    assert image_reply.activity_id == image["id"]
    assert fake.downloads == []


# -- conversation updates and feedback ------------------------------------------------------------


async def test_the_bot_added_to_a_team_or_a_personal_chat_says_how_to_use_it(
    make_teams_bot: TeamsBotFactory, fake: FakeBotConnector
) -> None:
    bot = await make_teams_bot()

    await bot.post(bot_added_to_team(service_url=fake.service_url))
    await bot.post(bot_added_personal(service_url=fake.service_url))
    await bot.post(member_removed(service_url=fake.service_url))

    team, personal = fake.calls
    assert (team.method, team.conversation_id, team.activity_id) == ("POST", TEAM, None)  # a new message
    assert "replyToId" not in team.body
    assert personal.conversation_id == PERSONAL_CONVERSATION
    for welcome in (team, personal):
        assert "mention me in a channel" in welcome.text
        assert "personal chat" in welcome.text and "`help`" in welcome.text


async def test_feedback_from_the_card_is_recorded_and_answered_in_the_invoke_response(
    make_teams_bot: TeamsBotFactory, fake: FakeBotConnector
) -> None:
    bot = await make_teams_bot()

    response = await bot.post(feedback_invoke("down", "1759944781430", service_url=fake.service_url))

    assert response.status == 200
    assert await response.json() == {
        "statusCode": 200,
        "type": "application/vnd.microsoft.activity.message",
        "value": text.FEEDBACK_THANKS,
    }
    metrics = await scrape(bot.client)
    assert metrics.value("threadwise_feedback_total", platform="teams", kb=KB, vote="down") == 1
    assert fake.calls == []  # nothing posted in the conversation


async def test_feedback_from_an_older_client_arrives_as_a_message_and_is_thanked_in_the_thread(
    make_teams_bot: TeamsBotFactory, fake: FakeBotConnector
) -> None:
    # Action.Submit (message-back) instead of Action.Execute: a message with `value` and no text.
    bot = await make_teams_bot()
    activity = personal_message("", service_url=fake.service_url)
    activity["value"] = {"threadwise": "feedback", "vote": "up", "ref": "1759944781430"}

    response = await bot.post(activity)

    assert response.status == 200
    metrics = await scrape(bot.client)
    assert metrics.value("threadwise_feedback_total", platform="teams", kb=KB, vote="up") == 1
    (thanks,) = fake.calls
    assert (thanks.text, thanks.activity_id) == (text.FEEDBACK_THANKS, activity["id"])


async def test_an_unknown_invoke_is_not_implemented(
    make_teams_bot: TeamsBotFactory, fake: FakeBotConnector
) -> None:
    bot = await make_teams_bot()
    invoke = feedback_invoke("up", "1", service_url=fake.service_url)
    invoke["name"] = "fileConsent/invoke"
    invoke["value"] = {"type": "fileUpload", "action": "decline", "context": {}}

    response = await bot.post(invoke)

    assert response.status == 501
    assert (await scrape(bot.client)).value("threadwise_feedback_total") is None


# -- the job and its address --------------------------------------------------------------------------


async def test_a_job_replies_from_another_process_with_only_its_serialised_address(
    make_teams_bot: TeamsBotFactory, fake: FakeBotConnector
) -> None:
    bot = await make_teams_bot(answerer=ScriptedAnswerer())
    await bot.engine.ingest(KB, "vpn.md", VPN_GUIDE)
    activity = channel_mention(QUESTION, service_url=fake.service_url)
    event = translate(activity)
    assert isinstance(event, Message)
    job = await bot.chat.dispatcher.handle(event.incoming)
    assert job is not None
    # What a queue would carry to a worker: JSON. The worker has its own adapter and sender.
    worker = TeamsOutbound(app_id=None, app_password=None)
    shipped = Job.from_dict(json.loads(json.dumps(job.to_dict())), {"teams": worker})
    assert shipped == job
    await bot.chat.runner.drain()
    fake.calls.clear()

    handler = JobHandler(
        engine=bot.engine,
        platforms={"teams": worker},
        memory=MemoryThreadMemory(),
        max_file_mb=10,
    )
    await handler.run(shipped)

    (answer,) = fake.calls
    assert answer.conversation_id == f"{CHANNEL};messageid=1759881511856"
    assert answer.activity_id == activity["id"]
    assert answer.text == "Open the Keychain app [1]."


# -- the HTTP edge --------------------------------------------------------------------------------


async def test_requests_that_are_not_activities_get_4xx(
    make_teams_bot: TeamsBotFactory, fake: FakeBotConnector
) -> None:
    bot = await make_teams_bot()

    not_json = await bot.client.post("/api/messages", data=b"{", headers={"Content-Type": "application/json"})
    form = await bot.client.post("/api/messages", data={"type": "message"})
    no_type = await bot.client.post("/api/messages", json={"text": "hi"})

    assert (not_json.status, form.status, no_type.status) == (400, 415, 400)


async def test_without_an_app_id_only_a_local_service_url_is_answered(
    make_teams_bot: TeamsBotFactory, fake: FakeBotConnector
) -> None:
    bot = await make_teams_bot()
    activity = personal_message(QUESTION, service_url="https://smba.trafficmanager.net/amer/x/")

    response = await bot.post(activity)

    assert response.status == 403
    assert fake.calls == []

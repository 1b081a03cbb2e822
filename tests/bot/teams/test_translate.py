"""Activity → Incoming: the pure translation, on the captured fixtures and on the test builders."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from botbuilder.core import TurnContext
from botbuilder.schema import Activity

from bot.teams import text as teams_text
from bot.teams.address import TeamsHandle
from bot.teams.graph import share_id
from bot.teams.translate import (
    BotAdded,
    Choice,
    Feedback,
    Message,
    Notice,
    Rejected,
    conversation_reference,
    graph_tenant,
    question_text,
    translate,
)
from tests.bot.teams import activities as build
from tests.conftest import shared_path

SERVICE_URL = "https://smba.trafficmanager.net/amer/56653e9d-2158-46ee-90d7-675c39642038/"


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(shared_path("fixtures", "teams", name).read_text())
    return data


def _message(activity: dict[str, Any]) -> Message:
    event = translate(activity)
    assert isinstance(event, Message)
    return event


# -- the captured activities ----------------------------------------------------------------------


def test_the_captured_channel_mention() -> None:
    event = _message(fixture("message_channel_mention.json"))

    incoming = event.incoming
    assert event.addressed and event.kind == "channel"
    assert incoming.text == "reply to thread"
    assert incoming.platform == "teams"
    assert incoming.workspace == "teams-50612dbb-0237-4969-b378-8d42590f9c00"
    assert incoming.user == "b15a9416-0ad3-4172-9210-7beb711d3f70"  # the Entra object id
    assert not incoming.is_direct
    assert incoming.files == ()  # the text/html mirror of the message is not a file
    thread = "19:6848757105754c8981c67612732d9aa7@thread.tacv2;messageid=1759881511856"
    assert incoming.thread == f"teams:{thread}"
    assert incoming.address.to_dict()["reply_to_id"] == "1759944781430"
    assert incoming.address.to_dict()["reference"]["conversation"]["id"] == thread
    assert incoming.event_id.startswith("1759944781430.")


def test_the_captured_file_upload_in_personal_chat() -> None:
    event = _message(fixture("composite_message_personal_file_upload.json"))

    incoming = event.incoming
    assert event.addressed and incoming.is_direct and event.kind == "personal"
    assert incoming.text == ""
    (file,) = incoming.files
    assert (file.name, file.url, file.size) == ("file_example.txt", "https://download.link", None)
    assert file.permalink == (
        "https://contoso.sharepoint.com/personal/johnadams_contoso_com/Documents/Applications/file_example.txt"
    )
    assert file.id == "1150D938-8870-4044-9F2C-5BBDEBA70C9D"


# -- files posted in channels and group chats ------------------------------------------------------

LINK = "https://contoso.sharepoint.com/sites/Engineering/Shared Documents/General/vpn guide.md"


def test_a_file_posted_in_a_channel_with_a_mention_is_read_through_graph_in_its_tenant() -> None:
    event = _message(build.channel_file("vpn guide.md", LINK, service_url=SERVICE_URL))

    incoming = event.incoming
    assert incoming.mentioned and not incoming.is_direct
    assert incoming.place == f"channel:{build.CHANNEL}"
    (file,) = incoming.files
    assert (file.name, file.url, file.size) == ("vpn guide.md", LINK, None)
    assert graph_tenant(file) == build.TENANT
    # A citation's link: percent-encoded, so that the space does not end a Markdown link.
    assert file.permalink == LINK.replace(" ", "%20")


def test_a_file_posted_without_a_mention_is_not_for_the_bot() -> None:
    assert translate(build.channel_file("vpn.md", LINK, service_url=SERVICE_URL, mentioned=False)) is None
    # With words, it is a message among people (answered only as a follow-up in a thread the bot is in).
    said = _message(
        build.channel_file("vpn.md", LINK, service_url=SERVICE_URL, mentioned=False, question="hi")
    )
    assert said.incoming.files == () and not said.addressed


def test_a_reference_in_personal_chat_is_not_read_there() -> None:
    """The personal chat keeps Teams' bot file API: a reference there (a cloud file) is not a file."""
    activity = build.personal_message(
        "", service_url=SERVICE_URL, attachments=[build.reference_attachment("a.md", LINK)]
    )

    event = translate(activity)

    assert isinstance(event, Notice) and event.text == teams_text.ATTACHMENT_UNSUPPORTED


def test_a_personal_chat_file_is_not_read_through_graph() -> None:
    (file,) = _message(
        build.personal_file_upload("f.txt", "https://download.link", service_url=SERVICE_URL)
    ).incoming.files

    assert graph_tenant(file) is None


def test_a_share_id_is_the_link_in_unpadded_base64url_after_u_bang() -> None:
    link = "https://contoso.sharepoint.com/sites/Eng/Shared Documents/~?>?>/ä.md"  # base64 with + and /

    encoded = share_id(link)

    assert encoded.startswith("u!") and not {"=", "+", "/"} & set(encoded)
    body = encoded[2:]
    assert base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode() == link


def test_the_captured_card_action_is_feedback_only_when_it_is_ours() -> None:
    theirs = fixture("invoke_adaptive_card_action_personal.json")  # data: {"feedback": "test invokes"}
    assert translate(theirs) is None

    ours = dict(
        theirs,
        value={
            "action": {
                "type": "Action.Execute",
                "data": {"threadwise": "feedback", "vote": "up", "ref": "17"},
            }
        },
    )
    event = translate(ours)
    assert event == Feedback(
        vote="up",
        ref="17",
        workspace="teams-56653e9d-2158-46ee-90d7-675c39642038",
        user="c5e99701-2a32-49c1-a660-4629ceeb8c61",
        invoke=True,
    )


def test_the_captured_conversation_updates() -> None:
    team = translate(fixture("docs_examples/conversationUpdate_bot_added_to_team.json"))
    personal_install = fixture("docs_examples/conversationUpdate_bot_added_personal.json")
    # The docs write placeholders ("28:<BOT ID>"); in Teams the recipient is the member added.
    personal_install["recipient"]["id"] = personal_install["membersAdded"][0]["id"]
    personal = translate(personal_install)
    removed = translate(fixture("docs_examples/conversationUpdate_team_member_removed.json"))

    assert isinstance(team, BotAdded)
    address = team.address.to_dict()
    assert address["reply_to_id"] is None  # a new message, not a reply
    assert address["reference"]["conversation"]["id"] == "19:efa9296d959346209fea44151c742e73@thread.skype"
    assert "activityId" not in address["reference"]
    assert isinstance(personal, BotAdded)
    assert removed is None


def test_an_old_mention_of_someone_else_keeps_the_name_and_does_not_address_the_bot() -> None:
    event = _message(fixture("docs_examples/message_channel_mention_2017.json"))

    assert not event.addressed
    assert event.kind == "channel"  # no conversationType in 2017: the thread id says so
    assert event.incoming.text == "Hey Pranav Smith check out this message"


@pytest.mark.parametrize(
    ("builder", "name"),
    [
        (
            lambda: build.channel_mention("reply to thread", service_url=SERVICE_URL),
            "message_channel_mention.json",
        ),
        (
            lambda: build.personal_file_upload("f.txt", "https://download.link", service_url=SERVICE_URL),
            "composite_message_personal_file_upload.json",
        ),
        (
            lambda: build.feedback_invoke("up", "1", service_url=SERVICE_URL),
            "invoke_adaptive_card_action_personal.json",
        ),
        (
            lambda: build.bot_added_to_team(service_url=SERVICE_URL),
            "docs_examples/conversationUpdate_bot_added_to_team.json",
        ),
        (
            lambda: build.bot_added_personal(service_url=SERVICE_URL),
            "docs_examples/conversationUpdate_bot_added_personal.json",
        ),
        (
            lambda: build.member_removed(service_url=SERVICE_URL),
            "docs_examples/conversationUpdate_team_member_removed.json",
        ),
    ],
)
def test_the_test_activities_have_the_shape_of_the_captured_ones(builder: Any, name: str) -> None:
    expected = fixture(name)
    expected.pop("_composite_note", None)
    ours = builder()
    if "value" in expected:  # a card action: the data is ours, Action.Execute adds a verb
        assert set(expected["value"]["action"]) <= set(ours["value"]["action"])
        expected["value"]["action"] = ours["value"]["action"] = {}

    assert _shape(ours) == _shape(expected)


def _shape(value: Any) -> Any:
    """Keys and nesting, not values (lists: the shape of their first item)."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(value[0])] if value else []
    return type(value).__name__


# -- mentions and text --------------------------------------------------------------------------


def test_the_bot_mention_is_removed_wherever_it_is_and_other_mentions_keep_their_names() -> None:
    activity = build.channel_mention("", service_url=SERVICE_URL)
    activity["text"] = "Is <at>Jane Doe</at> the owner of the <at>threadwise</at> VPN guide?&nbsp;\n"
    activity["entities"].append(
        {"mentioned": {"id": "29:jane", "name": "Jane Doe"}, "text": "<at>Jane Doe</at>", "type": "mention"}
    )

    assert question_text(activity) == "Is Jane Doe the owner of the VPN guide?"


def test_a_mention_of_the_bare_app_id_counts() -> None:
    activity = build.channel_mention("hi", service_url=SERVICE_URL)
    activity["entities"][0]["mentioned"]["id"] = build.APP_ID

    assert _message(activity).addressed


def test_a_channel_message_mentioning_only_someone_else_is_not_addressed() -> None:
    activity = build.channel_mention("hi", service_url=SERVICE_URL)
    activity["entities"][0]["mentioned"]["id"] = "29:someone-else"

    assert not _message(activity).addressed


def test_a_group_chat_is_not_direct_and_its_thread_is_the_chat() -> None:
    event = _message(build.group_chat_mention("hi", service_url=SERVICE_URL))

    assert event.kind == "groupChat" and event.addressed and not event.incoming.is_direct
    assert event.incoming.thread == f"teams:{build.GROUP_CHAT}"


def test_event_ids_differ_across_conversations_for_the_same_activity_id() -> None:
    channel = _message(build.channel_mention("a", service_url=SERVICE_URL, activity_id="1"))
    personal = _message(build.personal_message("a", service_url=SERVICE_URL, activity_id="1"))

    assert channel.incoming.event_id != personal.incoming.event_id


def test_attachments_without_text() -> None:
    image = build.personal_message("", service_url=SERVICE_URL, attachments=[build.inline_image(SERVICE_URL)])
    other = build.personal_message(
        "", service_url=SERVICE_URL, attachments=[{"contentType": "application/zip"}]
    )
    with_question = build.personal_message(
        "What is this?", service_url=SERVICE_URL, attachments=[build.inline_image(SERVICE_URL)]
    )

    image_event, other_event = translate(image), translate(other)
    assert isinstance(image_event, Notice) and "not pictures" in image_event.text
    assert isinstance(other_event, Notice) and "can't open" in other_event.text
    assert _message(with_question).incoming.text == "What is this?"  # the question is still answered


# -- the reply address --------------------------------------------------------------------------


def test_the_reference_is_plain_json_and_what_botbuilder_would_make() -> None:
    activity = build.personal_message("hi", service_url=SERVICE_URL)

    reference = conversation_reference(activity)

    assert json.loads(json.dumps(reference)) == reference
    theirs = TurnContext.get_conversation_reference(Activity().deserialize(activity)).serialize()
    ours_as_sdk = {k: v for k, v in reference.items()}
    ours_as_sdk["conversation"] = {k: v for k, v in reference["conversation"].items() if k != "tenantId"}
    assert ours_as_sdk == theirs


def test_ignored_activities() -> None:
    typing = dict(build.personal_message("", service_url=SERVICE_URL), type="typing")
    reaction = dict(build.personal_message("", service_url=SERVICE_URL), type="messageReaction")

    assert translate(typing) is None
    assert translate(reaction) is None


def test_a_message_says_where_it_was_said_as_a_scope() -> None:
    """The scope of the place a question was asked, which decides the documents it may read: a
    channel's threads are the channel, a group chat is its conversation, a personal chat its user's."""
    url = "https://smba.trafficmanager.net/amer/"
    in_thread = translate(build.channel_mention("q", service_url=url))
    new_post = translate(build.channel_mention("q", service_url=url, root=None))
    group = translate(build.group_chat_mention("q", service_url=url))
    personal = translate(build.personal_message("q", service_url=url, user_aad="aad-1"))
    assert isinstance(in_thread, Message) and isinstance(new_post, Message)
    assert in_thread.incoming.place == new_post.incoming.place
    assert in_thread.incoming.place.startswith("channel:") and ";messageid=" not in in_thread.incoming.place
    assert isinstance(group, Message) and group.incoming.place == f"channel:{build.GROUP_CHAT}"
    assert isinstance(personal, Message) and personal.incoming.place == "private:aad-1"


def test_the_captured_card_action_as_a_scope_choice() -> None:
    """A click on the card under a personal-chat upload, in the captured invoke's envelope: the
    clicker's own scope for "private", the same place and user as their messages, and the card's
    message (`replyToId`) as the handle the job's reply replaces."""
    invoke = fixture("invoke_adaptive_card_action_personal.json")
    upload = fixture("composite_message_personal_file_upload.json")
    for choice, scope in [("private", None), ("workspace", "workspace")]:
        data = {"threadwise": "scope", "upload": "1767765488000.0123456789", "choice": choice}
        clicked = dict(
            invoke, value={"action": {"type": "Action.Execute", "verb": "threadwise.scope", "data": data}}
        )

        event = translate(clicked)

        assert isinstance(event, Choice)
        incoming, sent = event.incoming, _message(dict(upload, **{"from": invoke["from"]})).incoming
        assert (incoming.user, incoming.place, incoming.workspace) == (sent.user, sent.place, sent.workspace)
        assert incoming.scope == (scope or sent.place) and incoming.choice == data["upload"]
        assert incoming.handle == TeamsHandle(activity_id=invoke["replyToId"])
        assert incoming.is_direct and incoming.text == "" and incoming.files == ()


def test_a_scope_choice_outside_personal_chat_is_rejected() -> None:
    invoke = build.feedback_invoke("up", "1", service_url=SERVICE_URL)
    data = {"threadwise": "scope", "upload": "1759944781430.0123456789", "choice": "workspace"}
    invoke["value"] = {"action": {"type": "Action.Execute", "verb": "threadwise.scope", "data": data}}
    invoke["conversation"] = {"id": build.CHANNEL, "conversationType": "channel", "tenantId": build.TENANT}

    assert isinstance(translate(invoke), Rejected)

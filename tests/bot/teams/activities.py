"""Teams activities for tests, shaped exactly like the captured ones in ../shared/fixtures/teams/.

Each builder copies the structure (keys, nesting, id formats) of one fixture file, named in its
docstring; `test_translate.py` checks the shapes against the files when ../shared is present. Only the
values a test cares about are parameters, and `serviceUrl` points wherever the test says (the fake Bot
Connector on 127.0.0.1).
"""

from __future__ import annotations

import itertools
import json
from typing import Any

TENANT = "56653e9d-2158-46ee-90d7-675c39642038"
APP_ID = "aabdbd62-bc97-4afb-83ee-575594577de5"
BOT_ID = f"28:{APP_ID}"
BOT_NAME = "threadwise"
USER_ID = "29:1uMVvhoAyfTqdMsyvHL0qlJTTfQF9MOUSI8_cQts2kdSWEZVDyJO2jz-CsNOhQcdYq1Bw4cHT0__O6XDj4AZ-Jw"
USER_AAD = "c5e99701-2a32-49c1-a660-4629ceeb8c61"
PERSONAL_CONVERSATION = (
    "a:17vxw6pGQOb3Zfh8acXT8m_PqHycYpaFgzu2mFMUfkT-h0UskMctq5ZPPc7FIQxn2bx7rBSm5yE_HeUXsCcKZBrv77RgorB3_"
    "1_pAdvMhi39ClxQgawzyQ9GBFkdiwOxT"
)
CHANNEL = "19:6848757105754c8981c67612732d9aa7@thread.tacv2"
TEAM = "19:66P469zibfbsGI-_a0aN_toLTZpyzS6u7CT3TsXdgPw1@thread.tacv2"
GROUP_CHAT = "19:meeting_NmQ5ZTc3YjctZjBjZS00ZWVjLWIxYzctZmUxMzQ4YjE1MjRj@thread.v2"

_ids = itertools.count(1759944781430)


def next_id() -> str:
    return str(next(_ids))


def _client_info() -> dict[str, Any]:
    return {
        "locale": "en-US",
        "country": "US",
        "platform": "Web",
        "timezone": "America/Los_Angeles",
        "type": "clientInfo",
    }


def _user(aad: str = USER_AAD, name: str = "Rido") -> dict[str, Any]:
    return {"id": USER_ID, "name": name, "aadObjectId": aad}


def _bot() -> dict[str, Any]:
    return {"id": BOT_ID, "name": BOT_NAME}


def bot_mention() -> dict[str, Any]:
    return {"mentioned": {"id": BOT_ID, "name": BOT_NAME}, "text": f"<at>{BOT_NAME}</at>", "type": "mention"}


def channel_mention(
    question: str,
    *,
    service_url: str,
    root: str | None = "1759881511856",
    activity_id: str | None = None,
    mentioned: bool = True,
    user_aad: str = USER_AAD,
) -> dict[str, Any]:
    """message_channel_mention.json: `<at>bot</at> question` in a channel thread (`;messageid=<root>`).

    `root=None` is a new top-level post, whose conversation id names the channel only.
    """
    activity_id = activity_id or next_id()
    prefix = f"<at>{BOT_NAME}</at> " if mentioned else ""
    html_prefix = (
        f'<span itemtype="http://schema.skype.com/Mention" itemscope="" itemid="0">{BOT_NAME}</span>&nbsp;'
        if mentioned
        else ""
    )
    return {
        "type": "message",
        "channelId": "msteams",
        "text": f"{prefix}{question}",
        "id": activity_id,
        "serviceUrl": service_url,
        "channelData": {
            "teamsChannelId": CHANNEL,
            "teamsTeamId": TEAM,
            "channel": {"id": CHANNEL},
            "team": {"id": TEAM},
            "tenant": {"id": TENANT},
        },
        "from": _user(user_aad),
        "recipient": _bot(),
        "conversation": {
            "id": f"{CHANNEL};messageid={root}" if root else CHANNEL,
            "isGroup": True,
            "conversationType": "channel",
            "tenantId": TENANT,
        },
        "entities": ([bot_mention()] if mentioned else []) + [_client_info()],
        "textFormat": "plain",
        "attachments": [{"contentType": "text/html", "content": f"<p>{html_prefix}{question}</p>"}],
        "timestamp": "2025-10-08T17:33:01.4953744Z",
        "localTimestamp": "2025-10-08T10:33:01.4953744-07:00",
        "locale": "en-US",
        "localTimezone": "America/Los_Angeles",
    }


def group_chat_mention(question: str, *, service_url: str) -> dict[str, Any]:
    """A group chat: the channel message's envelope with conversationType `groupChat` and no team."""
    activity = channel_mention(question, service_url=service_url)
    activity["conversation"] = {
        "id": GROUP_CHAT,
        "isGroup": True,
        "conversationType": "groupChat",
        "tenantId": TENANT,
    }
    activity["channelData"] = {"tenant": {"id": TENANT}}
    return activity


def personal_message(
    text: str,
    *,
    service_url: str,
    attachments: list[dict[str, Any]] | None = None,
    activity_id: str | None = None,
    user_aad: str = USER_AAD,
) -> dict[str, Any]:
    """composite_message_personal_file_upload.json's envelope (real personal chat, teams.net tests)."""
    return {
        "type": "message",
        "channelId": "msteams",
        "id": activity_id or next_id(),
        "serviceUrl": service_url,
        "channelData": {"tenant": {"id": TENANT}},
        "from": _user(user_aad),
        "recipient": _bot(),
        "conversation": {
            "id": PERSONAL_CONVERSATION,
            "conversationType": "personal",
            "tenantId": TENANT,
        },
        "entities": [_client_info()],
        "timestamp": "2026-01-07T06:04:59.89Z",
        "localTimestamp": "2026-01-06T22:04:59.89-08:00",
        "locale": "en-US",
        "localTimezone": "America/Los_Angeles",
        "text": text,
        "textFormat": "plain",
        "attachments": attachments or [],
    }


def emulator(activity: dict[str, Any]) -> dict[str, Any]:
    """The same activity from the Bot Framework Emulator (channelId `emulator`), which renders no Teams
    streaming, citations or feedback loop."""
    return {**activity, "channelId": "emulator"}


def file_attachment(name: str, download_url: str, *, file_type: str | None = None) -> dict[str, Any]:
    """docs_examples/file_download_info_attachment.partial.json: a file sent in personal chat."""
    return {
        "contentType": "application/vnd.microsoft.teams.file.download.info",
        "contentUrl": f"https://contoso.sharepoint.com/personal/johnadams_contoso_com/Documents/Applications/{name}",
        "name": name,
        "content": {
            "downloadUrl": download_url,
            "uniqueId": "1150D938-8870-4044-9F2C-5BBDEBA70C9D",
            "fileType": file_type or name.rsplit(".", 1)[-1],
            "etag": "123",
        },
    }


def reference_attachment(name: str, link: str | None) -> dict[str, Any]:
    """A file posted in a team channel or group chat, as a `reference` to where it is stored.

    No captured activity holds one (../shared/fixtures/teams has none): the shape is Graph's
    chatMessageAttachment for a file ("Working with Teams messaging APIs", file attachment:
    `contentType` `reference`, `contentUrl` the SharePoint link, `name`), which Teams mirrors into the
    activity. `link=None`: an attachment that carries the name only.
    """
    attachment: dict[str, Any] = {"contentType": "reference", "name": name}
    if link is not None:
        attachment["contentUrl"] = link
    return attachment


def channel_file(
    name: str, link: str | None, *, service_url: str, mentioned: bool = True, question: str = ""
) -> dict[str, Any]:
    """A new post in a team channel carrying one file (and the bot's mention, unless `mentioned=False`)."""
    activity = channel_mention(question, service_url=service_url, root=None, mentioned=mentioned)
    activity["attachments"].append(reference_attachment(name, link))
    return activity


def inline_image(service_url: str) -> dict[str, Any]:
    """An image pasted into the message (docs: "Fetch inline images"): served by the Bot Connector."""
    return {
        "contentType": "image/*",
        "contentUrl": f"{service_url}v3/attachments/0-eus-d4-5b8e7c62a5fcc0b7a3dd4c8b9f8c6f7c/views/original",
    }


def personal_file_upload(name: str, download_url: str, *, service_url: str) -> dict[str, Any]:
    """composite_message_personal_file_upload.json: a personal-chat message carrying one file."""
    return personal_message("", service_url=service_url, attachments=[file_attachment(name, download_url)])


def feedback_invoke(vote: str, ref: str, *, service_url: str) -> dict[str, Any]:
    """invoke_adaptive_card_action_personal.json: an Action.Execute press on a card in personal chat."""
    return {
        "type": "invoke",
        "channelId": "msteams",
        "id": "f:17b96347-e8b4-f340-10bc-eb52fc1a6ad4",
        "serviceUrl": service_url,
        "channelData": {
            "tenant": {"id": TENANT},
            "source": {"name": "message"},
            "legacy": {"replyToId": "1:12SWreU4430kJA9eZCb1kXDuo6A8KdDEGB6d9TkjuDYM"},
        },
        "from": _user(),
        "recipient": _bot(),
        "conversation": {
            "id": PERSONAL_CONVERSATION,
            "conversationType": "personal",
            "tenantId": TENANT,
        },
        "entities": [_client_info()],
        "value": {
            "action": {
                "type": "Action.Execute",
                "title": "👍 Helpful",
                "verb": "threadwise.feedback",
                "data": {"threadwise": "feedback", "vote": vote, "ref": ref},
            },
            "trigger": "manual",
        },
        "name": "adaptiveCard/action",
        "timestamp": "2026-01-07T06:04:59.89Z",
        "localTimestamp": "2026-01-06T22:04:59.89-08:00",
        "replyToId": "1767765488332",
        "locale": "en-US",
        "localTimezone": "America/Los_Angeles",
    }


def submit_action(
    reaction: str, reply_to: str, *, service_url: str, text: str | None = "This is my feedback."
) -> dict[str, Any]:
    """Teams' feedback loop: 👍/👎 under an answer, then its default form submitted.

    Source: MicrosoftDocs/msteams-docs@00dfa95ad7b130b7f8941f86fd834013de8f5a6a
    msteams-platform/bots/how-to/bot-messages-ai-generated-content.md ("Handle feedback"): name
    `message/submitAction`, value `{"actionName": "feedback", "actionValue": {"reaction": "like",
    "feedback": "{\"feedbackText\":\"This is my feedback.\"}"}}` (a JSON string), and `replyToId` the
    rated message (teams-ai's FeedbackLoopData.reply_to_id). The envelope is the captured personal-chat
    invoke's (invoke_adaptive_card_action_personal.json). `text=None`: the form left without a text.
    """
    action: dict[str, Any] = {"reaction": reaction}
    if text is not None:
        action["feedback"] = json.dumps({"feedbackText": text})
    invoke = feedback_invoke("up", reply_to, service_url=service_url)
    invoke.update(
        name="message/submitAction",
        replyToId=reply_to,
        value={"actionName": "feedback", "actionValue": action},
    )
    return invoke


def bot_added_to_team(*, service_url: str) -> dict[str, Any]:
    """docs_examples/conversationUpdate_bot_added_to_team.json."""
    return {
        "membersAdded": [{"id": BOT_ID}],
        "type": "conversationUpdate",
        "timestamp": "2017-02-23T19:38:35.312Z",
        "localTimestamp": "2017-02-23T12:38:35.312-07:00",
        "id": "f:5f85c2ad",
        "channelId": "msteams",
        "serviceUrl": service_url,
        "from": {"id": USER_ID},
        "conversation": {"isGroup": True, "conversationType": "channel", "id": TEAM},
        "recipient": _bot(),
        "channelData": {"team": {"id": TEAM}, "eventType": "teamMemberAdded", "tenant": {"id": TENANT}},
    }


def bot_added_personal(*, service_url: str) -> dict[str, Any]:
    """docs_examples/conversationUpdate_bot_added_personal.json."""
    return {
        "membersAdded": [{"id": BOT_ID}, {"id": USER_ID, "aadObjectId": USER_AAD}],
        "type": "conversationUpdate",
        "timestamp": "2019-04-23T10:17:44.349Z",
        "id": "f:5f85c2ad",
        "channelId": "msteams",
        "serviceUrl": service_url,
        "from": {"id": USER_ID, "aadObjectId": USER_AAD},
        "conversation": {"conversationType": "personal", "id": PERSONAL_CONVERSATION},
        "recipient": _bot(),
        "channelData": {"tenant": {"id": TENANT}},
    }


def member_removed(*, service_url: str) -> dict[str, Any]:
    """docs_examples/conversationUpdate_team_member_removed.json."""
    activity = bot_added_to_team(service_url=service_url)
    del activity["membersAdded"]
    activity["membersRemoved"] = [{"id": USER_ID}]
    activity["id"] = "f:d8a6a4aa"
    activity["channelData"]["eventType"] = "teamMemberRemoved"
    return activity

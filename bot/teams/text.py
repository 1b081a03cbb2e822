"""What only the Teams bot says (Markdown, as the core's replies; the sender renders it)."""

ASK_HOW = "mention me in a channel or group chat, or write to me in our personal chat"

WELCOME = """Hi, I'm *threadwise*. I answer questions from your team's documents, and say where \
each answer comes from.

• *Ask* — mention me in a channel or group chat (“@threadwise how do I rotate the VPN certificate?”), \
or just write to me in our personal chat. I answer in the thread.
• *Add documents* — attach files (PDF, Word, Markdown, text…) to a message in our personal chat, \
or post them in a channel or group chat with a mention of me: then only that channel or chat can \
ask about them.
• Say `help` to see everything I can do."""

INLINE_IMAGE = (
    "I can read documents, not pictures pasted into a message. To add a document, attach it as a file "
    "in our personal chat; to ask something, type your question."
)
ATTACHMENT_UNSUPPORTED = (
    "I can't open that kind of attachment. Attach documents as files in our personal chat, "
    "or type your question."
)
# The card under a personal-chat upload's reply: who may ask about its documents. Teams gives a bot no
# channel picker in personal chat, so the card says how a document becomes one channel's.
SCOPE_WORKSPACE = "Share with everyone"
SCOPE_PRIVATE = "Keep it for me"
SCOPE_CHANNEL_HOW = (
    "For one channel only? Post the file in that channel and mention me there: only that channel "
    "will be able to ask about it."
)
# The immediate answer to a click on that card (Teams shows it by the card); the job's reply replaces
# the card a moment later.
SCOPE_CHOICE_TAKEN = "Got it, one moment…"
FILE_LINK_EXPIRED = "{name}: the download link expired before I could fetch it. Please send the file again."
FILE_DOWNLOAD_REFUSED = "{name}: Teams would not let me download it (HTTP {status}). Please send it again."
FILE_HOST_REFUSED = (
    "{name}: its download link does not point to Teams' file storage (SharePoint or OneDrive), so I did "
    "not fetch it. Please send the file again from Teams."
)
CARD_ACTION_UNKNOWN = "That button is not one of mine, so nothing was done."
# A file posted in a team channel or group chat, read through Microsoft Graph.
GRAPH_FORBIDDEN = (
    "{name}: I'm not allowed to read files shared in channels here yet. A Teams admin needs to grant "
    "my app the Microsoft Graph permission Files.Read.All (with admin consent). Until then, send the "
    "file to me in our personal chat."
)
GRAPH_NOT_SET_UP = (
    "{name}: reading files shared in channels is not set up for me here. Send the file to me in our "
    "personal chat instead."
)
SHARED_FILE_GONE = "{name}: it is no longer where it was shared (deleted or moved). Please share it again."
SHARED_FILE_NOT_HERE = (
    "{name}: its link points to a file outside this place's own files (the channel's files, or in a group "
    "chat the sender's OneDrive), so I did not read it. Upload the file here, in this channel or chat, "
    "and mention me with it."
)
SHARED_FILE_NO_LINK = (
    "{name}: Teams did not tell me where this file is stored, so I could not read it. Send it to me "
    "in our personal chat instead."
)

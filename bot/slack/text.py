"""What only the Slack bot says (Markdown, as the core's replies; the sender renders it)."""

ASK_HOW = "mention me in a channel, or write to me in a direct message"

CONNECT_REFUSED = (
    "Sorry, I can't help you here: you're writing from another organisation (Slack Connect), and the "
    "documents I answer from belong to this one, so only its members can ask me or add to them. "
    "If your organisation uses threadwise, ask it in your own workspace."
)

# Suggested prompts when someone opens a thread with the bot in Slack's AI app view: (title, message).
ASSISTANT_PROMPTS_TITLE = "Try one of these:"
ASSISTANT_PROMPTS = (
    ("What can you do?", "help"),
    ("Which documents do you know?", "docs"),
    ("How big is the knowledge base?", "stats"),
)

# The form a 👎 opens (a modal: title and button ≤ 24 characters).
REASON_TITLE = "What went wrong?"
REASON_SUBMIT = "Send"
REASON_CLOSE = "Skip"
REASON_LABEL = "The answer was…"
REASON_COMMENT_LABEL = "Anything to add? (optional)"
REASON_MISSING = "Pick one, or press Skip."

# What Slack rotates under an AI app thread while an answer is being found (≤ 10).
LOADING = ("Searching your documents…", "Reading the passages that match…", "Writing the answer…")

# The buttons under a direct-message upload's reply: who may ask about its documents.
SCOPE_WORKSPACE = "Share with the workspace"
SCOPE_PRIVATE = "Keep it for me"
SCOPE_CHANNEL = "Only for a channel…"

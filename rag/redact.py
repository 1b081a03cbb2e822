"""Credentials out of URLs, wherever a URL may be printed: logs, `threadwise check`, /ready, errors.

Settings such as REDIS_URL, CHROMA_HOST, GROQ_BASE_URL and SLACK_API_URL may carry a password, either
as `user:password@host` or as a query parameter (`?password=`, `?token=`, `?key=`…), and libraries
repeat URLs in their messages and debug logs. `redact` masks both forms in any text, so it can be
applied to a whole line without knowing where the URL is in it.
"""

from __future__ import annotations

import re

MASK = "***"

# scheme://user:password@  or  scheme://token@  (a user name alone may be a token, as in git URLs)
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/\s@?#'\"]+)@")
# ?password=… &token=… ;key=… and the other names credentials go by in query strings
_SECRET_PARAMS = (
    "password|passwd|pwd|pass|secret|client_secret|token|access_token|refresh_token|id_token|auth|"
    "api_key|apikey|api-key|key|sig|signature|x-amz-signature|x-amz-credential|x-amz-security-token|code"
)
_QUERY = re.compile(rf"(?P<lead>[?&;](?:{_SECRET_PARAMS})=)[^&;#\s'\"]*", re.IGNORECASE)


def redact(text: str) -> str:
    """`text` with the password (or token) of every URL in it, and secret query values, masked."""
    if "://" not in text and "=" not in text:  # the common case: nothing to look at
        return text
    return _QUERY.sub(rf"\g<lead>{MASK}", _USERINFO.sub(_userinfo, text))


def _userinfo(match: re.Match[str]) -> str:
    user, colon, _ = match["userinfo"].partition(":")
    kept = f"{user}:{MASK}" if colon else MASK
    return f"{match['scheme']}{kept}@"

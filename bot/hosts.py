"""Which URLs a download may fetch: TEAMS_FILE_HOSTS parsed. Settings validates the variable with it
at start-up, and the Teams fetcher asks it of every URL and every redirect (bot/teams/files.py).

Entries are exact host names, `*.domain` suffixes, and — for tests only — loopback origins such as
`http://127.0.0.1:8080`; anything else may only be fetched over https on port 443 by name.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from yarl import URL


@dataclass(frozen=True)
class FileHosts:
    """TEAMS_FILE_HOSTS parsed: exact hosts, `*.` domain suffixes, and test-only loopback origins."""

    exact: frozenset[str] = frozenset()
    suffixes: tuple[str, ...] = ()
    local_origins: frozenset[tuple[str, str, int]] = frozenset()  # (scheme, loopback IP, port)

    @classmethod
    def parse(cls, entries: Iterable[str]) -> FileHosts:
        """ValueError naming the first entry that is not `host`, `*.domain` or `http://<loopback>:PORT`."""
        exact: set[str] = set()
        suffixes: list[str] = []
        origins: set[tuple[str, str, int]] = set()
        for entry in (e.strip().lower().rstrip(".") for e in entries):
            if "://" in entry:
                origins.add(_local_origin(entry))
            elif entry.startswith("*."):
                suffixes.append(_domain(entry[2:], entry, wildcard=True))
            else:
                exact.add(_domain(entry, entry, wildcard=False))
        return cls(frozenset(exact), tuple(suffixes), frozenset(origins))

    def refusal(self, url: URL) -> str:
        """Why `url` may not be fetched ("" when it may)."""
        scheme, host = url.scheme.lower(), (url.host or "").lower().rstrip(".")
        if url.user is not None or url.password is not None:
            return "credentials in the URL"
        if (scheme, host, url.port) in self.local_origins:
            return ""
        if scheme != "https":
            return f"scheme {scheme or 'none'!r}, not https"
        if url.port != 443:
            return f"port {url.port}, not 443"
        if _is_ip(host):
            return "an IP address, not a host name"
        if host in self.exact or any(host.endswith(f".{suffix}") for suffix in self.suffixes):
            return ""
        return "not a Teams file host (TEAMS_FILE_HOSTS)"


def _domain(name: str, entry: str, *, wildcard: bool) -> str:
    labels = name.split(".")
    valid = all(label and all(c.isalnum() or c == "-" for c in label) for label in labels)
    if not valid or _is_ip(name) or (wildcard and len(labels) < 2):
        raise ValueError(f"{entry!r} is not a host name or *.domain (e.g. *.sharepoint.com)")
    return name


def _local_origin(entry: str) -> tuple[str, str, int]:
    """`http(s)://<loopback IP>:<port>`, exactly: the only way to name a non-public address (tests)."""
    try:
        url = URL(entry)
        host = ipaddress.ip_address(url.host or "")
    except ValueError:
        host = None
    if host is None or not host.is_loopback or url.explicit_port is None or url.path not in ("", "/"):
        raise ValueError(
            f"{entry!r}: an entry with a scheme must be a loopback origin with its port, such as "
            "http://127.0.0.1:8080 (for tests); Teams' hosts are names such as *.sharepoint.com"
        )
    if url.scheme not in ("http", "https"):
        raise ValueError(f"{entry!r}: only http and https")
    return url.scheme, str(url.host), url.explicit_port


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True

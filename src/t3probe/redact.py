"""Secrets out of URLs and texts that embed them, before they reach events and logs.

Leg and DoH URLs may carry credentials (``user:pass@``) or tokens in the query string;
exception texts from the HTTP client quote the URL. Pure: text in, text out.
"""

from __future__ import annotations

import re
import traceback
from urllib.parse import SplitResult, urlsplit

REDACTED = "REDACTED"
# scheme://[userinfo@]host...: userinfo and query values are what carry secrets.
_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")


def redact_url(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:
        return REDACTED
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{REDACTED}@{netloc.rpartition('@')[2]}"
    query = "&".join(
        f"{pair.partition('=')[0]}={REDACTED}" if "=" in pair else REDACTED
        for pair in parts.query.split("&")
        if pair
    )
    return SplitResult(parts.scheme, netloc, parts.path, query, "").geturl()


def redact_text(text: str) -> str:
    """Every URL inside ``text`` redacted; the rest untouched."""
    return _URL.sub(lambda match: redact_url(match.group(0)), text)


def redact_exception(exc: BaseException) -> str:
    """The traceback of ``exc`` (with its causes), every URL in it redacted.

    For logging instead of ``log.exception``, whose text would quote URLs as they are.
    """
    return redact_text("".join(traceback.format_exception(exc)).rstrip())

"""Secrets in URLs (user info, query values) never reach an event detail or a log line."""

from __future__ import annotations

from t3probe.redact import REDACTED, redact_text, redact_url


def test_urls_lose_their_userinfo_and_query_values() -> None:
    url = "wss://user:pa55@t3.example.test:8443/probe/ws?token=abc&x=1#frag"
    redacted = redact_url(url)
    assert "pa55" not in redacted and "abc" not in redacted and "user" not in redacted
    assert (
        redacted == f"wss://{REDACTED}@t3.example.test:8443/probe/ws?token={REDACTED}&x={REDACTED}"
    )
    text = f"Cannot connect to host {url} ssl:default [Connection refused]"
    assert (
        redact_text(text) == f"Cannot connect to host {redacted} ssl:default [Connection refused]"
    )
    assert redact_text("no url here") == "no url here"

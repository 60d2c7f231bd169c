"""Secrets never reach error text (#25.3): a token reply's body is never quoted, and a
server's text is redacted before it is cut; sync, asyncio and the trigger's event."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from airflow_provider_meti._http import ReadReply, error_message, redact
from airflow_provider_meti.exceptions import MetiApiError, MetiAuthError
from airflow_provider_meti.triggers.meti import MetiSourceTrigger
from tests.test_gate_budget import (  # noqa: F401
    PASSWORD,
    PATHS,
    SOURCE,
    scripted,
    settings_for,
    url_of,
)

FORM_TOKEN = "tok-form-encoded-5f3c2a9b81"


def form_encoded_token(request) -> None:
    body = f"access_token={FORM_TOKEN}&scope=read+write&expires_in=3600".encode()
    request.reply(200, body, content_type="application/x-www-form-urlencoded")


def echoing_5xx(request) -> None:
    """A 5xx that echoes the request: the password straddles the 80th character."""
    echoed = "upstream failed while handling " + "x" * 12 + request.body.decode()
    request.reply(502, echoed.encode(), content_type="text/plain")


@pytest.mark.parametrize("get_source", PATHS)
def test_a_form_encoded_token_reply_is_described_not_quoted(scripted, get_source):  # noqa: F811
    server = scripted(form_encoded_token)
    settings, auth = settings_for(url_of(server), max_retries=0)

    with pytest.raises(MetiAuthError) as raised:
        get_source(settings, auth)

    message = str(raised.value)
    assert FORM_TOKEN not in message and "access_token=" not in message
    assert "not JSON" in message
    assert "application/x-www-form-urlencoded" in message and "bytes" in message


@pytest.mark.parametrize("get_source", PATHS)
def test_a_5xx_echoing_the_password_shows_no_part_of_it(scripted, get_source):  # noqa: F811
    server = scripted(echoing_5xx)
    settings, auth = settings_for(url_of(server), max_retries=0)

    with pytest.raises(MetiApiError, match="HTTP 502") as raised:
        get_source(settings, auth)

    message = str(raised.value)
    assert PASSWORD[:4] not in message  # not even the prefix a cut would have left


def test_redaction_comes_before_the_cut():
    secret = "s3cr3t-passw0rd-that-is-long"
    body = ("y" * 70 + secret).encode()
    reply = ReadReply(500, {"Content-Type": "text/plain"}, body)
    text = error_message(reply, lambda text: redact(text, (secret,)))
    assert secret[:5] not in text
    assert "***" in text or text.endswith("...")


def test_redaction_finds_a_secret_as_json_and_forms_quote_it():
    secret = 'pa"ss wörd&1'
    echoed = json.dumps({"password": secret}) + " password=pa%22ss+w%C3%B6rd%261"
    assert "pa" not in redact(echoed, (secret,)).replace("password", "")


def test_the_trigger_event_for_a_form_encoded_token_reply_holds_no_token(
    scripted,  # noqa: F811
    monkeypatch,
):
    server = scripted(form_encoded_token)
    from airflow_provider_meti.hooks import meti as meti_hooks

    monkeypatch.setattr(meti_hooks, "_clients", {})
    monkeypatch.setenv(
        "AIRFLOW_CONN_METI_LEAKY",
        json.dumps(
            {
                "conn_type": "meti",
                "host": url_of(server),
                "login": "a@b.c",
                "password": PASSWORD,
                "extra": {"max_retries": 0},
            }
        ),
    )
    trigger = MetiSourceTrigger(
        meti_conn_id="meti_leaky",
        source_id=SOURCE,
        wait_for="exists",
        poll_interval=0.02,
        deadline=time.time() + 120,
    )

    async def first_event() -> dict:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("no event")

    payload = asyncio.run(asyncio.wait_for(first_event(), 60))
    assert payload["status"] == "error"
    shown = json.dumps(payload)
    assert FORM_TOKEN not in shown and PASSWORD not in shown
    assert "not JSON" in shown


def revoking_every_token():
    """Issues a new token on each request to /token and refuses every one, quoting all of
    them: the replay's 401 names the token of the first try, no longer the current one."""
    issued: list[str] = []

    def script(request) -> None:
        if request.path.startswith("/token"):
            issued.append(f"tok-revoked-{len(issued):02d}-7d1e0c")
            request.reply_json(200, {"token": issued[-1], "expires_in": 3600})
        else:
            request.reply_json(401, {"message": f"tokens revoked: {', '.join(issued)}"})

    return script, issued


@pytest.mark.parametrize("get_source", PATHS)
def test_a_refusal_quoting_an_earlier_token_shows_none(scripted, get_source):  # noqa: F811
    script, issued = revoking_every_token()
    server = scripted(script)
    settings, auth = settings_for(url_of(server), max_retries=0)

    with pytest.raises(MetiAuthError, match="refused with a freshly issued token") as raised:
        get_source(settings, auth)

    message = str(raised.value)
    assert len(issued) == 2  # the first try's token and the replay's
    assert "tokens revoked" in message
    assert not [token for token in issued if token in message], message

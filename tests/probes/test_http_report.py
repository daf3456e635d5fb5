"""What the HTTP probe tells of a response, on plain values: blackbox's regex gauge, and a
mismatch told without the secrets the request carried (a target may echo them back)."""

from __future__ import annotations

import re

from healthd.config.http_rules import Expectations, Mismatch, Observed, judge
from healthd.errors import REDACTED
from healthd.probes._http_report import regex_failed, told_without
from healthd.results import ErrorKind

SECRET = "Bearer s3cr3t-t0ken"


def seen(status: int = 200, body: bytes = b"", **headers: str) -> Observed:
    return Observed(
        status=status, headers={k.lower().replace("_", "-"): [v] for k, v in headers.items()}, body=body
    )


def told(expect: Expectations, response: Observed, secrets: list[str]) -> Mismatch:
    mismatch = judge(expect, response)
    assert mismatch is not None
    return told_without(secrets, mismatch, expect, response)


def test_an_echoed_secret_is_not_quoted_from_the_body() -> None:
    expect = Expectations(body_regex=re.compile("^healthy$"))
    response = seen(body=f"you sent Authorization: {SECRET}".encode())
    raw = judge(expect, response)
    assert raw is not None and SECRET in raw.message  # what it would say untold
    mismatch = told(expect, response, [SECRET])
    assert mismatch.kind is ErrorKind.BODY_MISMATCH
    assert "s3cr3t" not in mismatch.message and REDACTED in mismatch.message


def test_an_echoed_secret_is_not_quoted_from_a_header() -> None:
    expect = Expectations(headers={"X-Echo": re.compile("^ok$")})
    mismatch = told(expect, seen(x_echo=SECRET), [SECRET])
    assert "s3cr3t" not in mismatch.message and REDACTED in mismatch.message


def test_a_verdict_the_secret_itself_decides_says_so_without_it() -> None:
    # the body breaks body_not_regex only through the secret: no message can quote it
    expect = Expectations(body_not_regex=re.compile("t0ken"))
    mismatch = told(expect, seen(body=f"echo: {SECRET}".encode()), [SECRET])
    assert mismatch == Mismatch(
        ErrorKind.BODY_MISMATCH, "body_mismatch: the response holds a configured secret (not shown)"
    )


def test_a_status_mismatch_keeps_its_message() -> None:
    expect = Expectations(status=("2xx",))
    mismatch = told(expect, seen(status=503, body=SECRET.encode()), [SECRET])
    assert mismatch == Mismatch(ErrorKind.HTTP_STATUS, "status 503, expected 2xx")


def test_regex_failed_counts_header_and_body_regexes_only() -> None:
    body_rule = Expectations(status=("200",), body_regex=re.compile("ok"))
    assert regex_failed(body_rule, seen(status=500, body=b"down"))  # whatever the status
    assert not regex_failed(body_rule, seen(status=500, body=b"ok"))
    header_rule = Expectations(headers={"X-Ready": re.compile("^yes$")})
    assert regex_failed(header_rule, seen(x_ready="no"))
    status_only = Expectations(status=("200",), json_path=('$.status == "UP"',))
    assert not regex_failed(status_only, seen(status=500, body=b"{}"))

"""The HTTP verdict rules on plain values: status classes, regexes, headers, json_path."""

from __future__ import annotations

import re

import pytest
from healthd.config.http_rules import Expectations, Observed, excerpt, judge, parse_status, status_matches
from healthd.config.json_path import evaluate, parse_condition
from healthd.probes._http_tls import TlsInfo, expiry_shortfall, ssl_reason
from healthd.results import ErrorKind


def seen(status: int = 200, body: bytes = b"", **headers: str) -> Observed:
    return Observed(
        status=status, headers={k.lower().replace("_", "-"): [v] for k, v in headers.items()}, body=body
    )


@pytest.mark.parametrize(
    ("value", "normal"), [(200, "200"), ("204", "204"), ("2xx", "2xx"), ("3XX", "3xx"), (" 5xx ", "5xx")]
)
def test_status_patterns_are_normalised(value: object, normal: str) -> None:
    assert parse_status(value) == normal


@pytest.mark.parametrize("value", [99, 600, "6xx", "2x", "20", "abc", True, None, 2.5])
def test_bad_status_patterns_are_rejected(value: object) -> None:
    with pytest.raises(ValueError, match="status code"):
        parse_status(value)


def test_status_matching_by_code_and_class() -> None:
    assert status_matches(204, ["2xx"])
    assert status_matches(404, ["200", "404"])
    assert not status_matches(301, ["2xx", "404"])
    assert not status_matches(500, ["200"])


def test_status_mismatch_names_code_location_and_expectation() -> None:
    mismatch = judge(Expectations(), Observed(302, {}, b"", location="/login"))
    assert mismatch is not None and mismatch.kind is ErrorKind.HTTP_STATUS
    assert mismatch.message == "status 302 (Location: /login), expected 2xx"


def test_body_regex_match_and_mismatch_with_truncated_excerpt() -> None:
    expect = Expectations(body_regex=re.compile(r"\bOK\b"))
    assert judge(expect, seen(body=b"all OK here")) is None
    mismatch = judge(expect, seen(body=b"x" * 500))
    assert mismatch is not None and mismatch.kind is ErrorKind.BODY_MISMATCH
    assert "/\\bOK\\b/" in mismatch.message
    assert "(500 chars)" in mismatch.message and len(mismatch.message) < 250


def test_body_not_regex_quotes_the_hit() -> None:
    expect = Expectations(body_not_regex=re.compile("ERROR: [a-z]+"))
    assert judge(expect, seen(body=b"fine")) is None
    mismatch = judge(expect, seen(body=b"... ERROR: disk full ..."))
    assert mismatch is not None and "'ERROR: disk'" in mismatch.message


def test_body_is_decoded_with_its_charset_and_unknown_charsets_fall_back() -> None:
    expect = Expectations(body_regex=re.compile("café"))
    assert judge(expect, Observed(200, {}, "café".encode("latin-1"), charset="latin-1")) is None
    assert judge(expect, Observed(200, {}, "café".encode(), charset="no-such-charset")) is None


def test_headers_any_value_matches_and_missing_is_reported() -> None:
    expect = Expectations(headers={"Content-Type": re.compile("^application/json")})
    assert judge(expect, Observed(200, {"content-type": ["text/plain", "application/json"]}, b"")) is None
    wrong = judge(expect, seen(content_type="text/html"))
    assert wrong is not None and wrong.kind is ErrorKind.BODY_MISMATCH
    assert "header Content-Type: 'text/html' does not match" in wrong.message
    missing = judge(expect, seen())
    assert missing is not None and "header Content-Type is missing" in missing.message


def test_status_is_judged_before_the_body() -> None:
    expect = Expectations(status=("200",), body_regex=re.compile("never"))
    mismatch = judge(expect, seen(status=503, body=b"x"))
    assert mismatch is not None and mismatch.kind is ErrorKind.HTTP_STATUS


DOC = {
    "status": "UP",
    "checks": [{"name": "db", "status": "UP", "latency_ms": 12.5}, {"name": "cache", "up": True}],
    "count": 3,
    "weird key": None,
    "version": "2.4.1",
}


@pytest.mark.parametrize(
    "condition",
    [
        'status == "UP"',
        '$.status == "UP"',
        'status != "DOWN"',
        "checks[0].latency_ms < 100",
        "checks[0].latency_ms >= 12.5",
        "count > 2",
        "count == 3",
        "checks[1].up == true",
        "checks[1].up != 1",  # JSON equality: true is not 1
        '$["weird key"] == null',
        '$["weird key"]',
        "checks[1]",
        'version =~ "^2\\\\."',
        'version > "2.3"',
        '$.checks[0]["name"] == "db"',
    ],
)
def test_conditions_that_hold(condition: str) -> None:
    assert evaluate(parse_condition(condition), DOC) is None


@pytest.mark.parametrize(
    ("condition", "reason"),
    [
        ('status == "DOWN"', 'found "UP"'),
        ("count < 3", "found 3"),
        ("checks[5].status", "checks[5] is out of range (list of 2)"),
        ("nothing.here", "nothing does not exist"),
        ("status.inner", "status is not an object"),
        ("status[0]", "status is not a list"),
        ('count =~ "3"', "not a string"),
        ('count > "2"', "cannot compare"),
        ("checks[1].up == 1", "found true"),
    ],
)
def test_conditions_that_fail_say_why(condition: str, reason: str) -> None:
    failure = evaluate(parse_condition(condition), DOC)
    assert failure is not None and reason in failure, failure
    assert failure.startswith(f"json_path {condition}")


@pytest.mark.parametrize(
    ("condition", "error"),
    [
        ("", "empty"),
        ("status = UP", "expected an operator"),
        ("status == UP", "not a JSON value"),
        ("status ~= 'x'", "expected an operator"),
        ("9lives", "starts with $ or a key name"),
        ("a.[0]", "cannot read the path"),
        ('v =~ "("', "invalid regex"),
        ("v =~ 3", "needs a regex"),
        ("v < true", "compares numbers or strings"),
    ],
)
def test_bad_conditions_are_rejected_with_the_reason(condition: str, error: str) -> None:
    with pytest.raises(ValueError, match=re.escape(error)):
        parse_condition(condition)


def test_json_path_on_a_response() -> None:
    expect = Expectations(json_path=('status == "UP"', "checks[0].latency_ms < 50"))
    assert judge(expect, seen(body=b'{"status": "UP", "checks": [{"latency_ms": 3}]}')) is None
    down = judge(expect, seen(body=b'{"status": "DOWN"}'))
    assert down is not None and down.kind is ErrorKind.BODY_MISMATCH and 'found "DOWN"' in down.message
    not_json = judge(expect, seen(body=b"<html>"))
    assert not_json is not None and "body is not JSON" in not_json.message


def test_json_path_refuses_a_truncated_body() -> None:
    expect = Expectations(json_path=("status",))
    mismatch = judge(expect, Observed(200, {}, b'{"status": 1', truncated=True))
    assert mismatch is not None and "truncated at 12 bytes" in mismatch.message


def test_excerpt_is_bounded_and_one_line() -> None:
    assert excerpt("short") == "'short'"
    long = excerpt("line\n" * 100)
    assert "\n" not in long and long.endswith("(500 chars)") and len(long) < 200


def test_certificate_expiry_against_cert_expiry_min() -> None:
    day = 86400.0
    tls = TlsInfo("TLSv1.3", "TLS_AES_128_GCM_SHA256", earliest_expiry=100 * day, expiring_subject="CN=web")
    assert expiry_shortfall(tls, minimum=14 * day, now=80 * day) is None
    soon = expiry_shortfall(tls, minimum=30 * day, now=80 * day)
    assert soon == (
        "certificate CN=web expires in 20.0 days (1970-04-11T00:00:00Z), less than cert_expiry_min 30 days"
    )
    gone = expiry_shortfall(tls, minimum=day, now=101 * day)
    assert gone is not None and "CN=web expired (" in gone
    unknown = TlsInfo("TLSv1.3", "x", earliest_expiry=None, expiring_subject="")
    assert "unreadable" in (expiry_shortfall(unknown, minimum=day, now=0) or "")


def test_ssl_reasons_read_as_words() -> None:
    class Alert(Exception):
        reason = "TLSV13_ALERT_CERTIFICATE_REQUIRED"

    class Verify(Exception):
        verify_message = "certificate has expired"

    assert ssl_reason(Alert()) == "tlsv13 alert certificate required"
    assert ssl_reason(Verify()) == "certificate has expired"
    assert ssl_reason(ValueError("plain")) == "plain"

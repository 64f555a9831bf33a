"""Escaping: hostile strings never change an output's structure, and stay readable."""

from __future__ import annotations

import csv
import io
import re

from helpers.sinkcorpus import HOSTILE
from hypothesis import given
from hypothesis import strategies as st

from sinks.escape import (
    cef_header,
    cef_value,
    csv_cell,
    dot_string,
    is_dns1123_subdomain,
    is_dns_name,
    is_label_key,
    is_label_value,
    k8s_name,
    sd_param_value,
    syslog_header_field,
    terminal,
)

anything = st.text(alphabet=st.characters(codec="utf-8"), max_size=80)


def unescape_cef_value(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "r": "\r"}.get(m[1], m[1]), text)


@given(anything)
def test_terminal_text_is_one_printable_line(text: str) -> None:
    shown = terminal(text)
    assert shown.isprintable()
    assert "\n" not in shown and "\x1b" not in shown


def test_terminal_shows_invisible_characters_as_escapes() -> None:
    assert terminal(HOSTILE) == 'evil"name\\n<script>,;|\\\\x00\\u202e.example'
    assert terminal("cartservice") == "cartservice"


@given(anything)
def test_cef_values_cannot_start_a_new_field(text: str) -> None:
    escaped = cef_value(text)
    assert "\n" not in escaped and "\r" not in escaped
    # every '=' is escaped, so a parser splitting on unescaped '=' sees one value
    assert not re.search(r"(?<!\\)(?:\\\\)*=", escaped)


def test_cef_values_round_trip_through_a_parser() -> None:
    text = "a=b \\ c\nd"
    assert unescape_cef_value(cef_value(text)) == text


@given(anything)
def test_cef_header_fields_cannot_add_a_field(text: str) -> None:
    escaped = cef_header(text)
    assert not re.search(r"(?<!\\)(?:\\\\)*\|", escaped)
    assert "\n" not in escaped


@given(anything)
def test_structured_data_values_stay_inside_their_quotes(text: str) -> None:
    escaped = sd_param_value(text)
    assert not re.search(r'(?<!\\)(?:\\\\)*["\]]', escaped)


@given(st.one_of(st.none(), anything))
def test_syslog_header_fields_are_printable_ascii_without_spaces(text: str | None) -> None:
    field = syslog_header_field(text, 48)
    assert 1 <= len(field) <= 48
    assert all(33 <= ord(char) <= 126 for char in field)


@given(anything)
def test_dot_strings_are_one_quoted_token(text: str) -> None:
    quoted = dot_string(text)
    assert quoted.startswith('"') and quoted.endswith('"')
    inner = quoted[1:-1]
    assert not re.search(r'(?<!\\)(?:\\\\)*"', inner)
    assert "\n" not in inner


def test_dot_strings_escape_graphviz_entities_and_escapes() -> None:
    assert dot_string("a&lt;b \\N") == '"a&amp;lt;b \\\\\\\\N"'


def test_csv_cells_never_start_a_formula() -> None:
    assert csv_cell("=HYPERLINK(1)") == "'=HYPERLINK(1)"
    assert csv_cell("+1") == "'+1" and csv_cell("@x") == "'@x" and csv_cell("-2") == "'-2"
    assert csv_cell("frontend") == "frontend"
    out = io.StringIO()
    csv.writer(out).writerow([csv_cell(HOSTILE), "next"])
    assert next(csv.reader(io.StringIO(out.getvalue()))) == [HOSTILE, "next"]


def test_dns_names() -> None:
    assert is_dns_name("api.stripe.com") and is_dns_name("_sip._tcp.example.org")
    assert not is_dns_name(HOSTILE) and not is_dns_name("") and not is_dns_name("-a.com")
    assert not is_dns_name("a" * 64 + ".com")


def test_label_keys_and_values() -> None:
    assert is_label_key("app.kubernetes.io/name") and is_label_key("app")
    assert not is_label_key("bad key") and not is_label_key("/name")
    assert is_label_value("") and is_label_value("v1.2_3-x")
    assert not is_label_value(HOSTILE) and not is_label_value("x" * 64)


@given(anything)
def test_k8s_names_are_always_valid_and_distinct(text: str) -> None:
    name = k8s_name(text)
    assert is_dns1123_subdomain(name)
    if not is_dns1123_subdomain(text):
        assert name != k8s_name(text + "x")


def test_k8s_names_keep_valid_names_and_fit_a_limit() -> None:
    assert k8s_name("callmap-cartservice-ingress") == "callmap-cartservice-ingress"
    assert len(k8s_name("a" * 300)) <= 253
    assert k8s_name("Evil Name", 63).startswith("evil-name-")

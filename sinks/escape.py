"""Escaping for every output format, and checks of names before they enter one.

Strings in edges came off the network (DNS names above all) or from Kubernetes
(names, labels): callmap carries them verbatim and each output escapes them for
itself, here. The promises:

- a hostile string never breaks the structure of an output (a new CEF field, a
  new syslog structured-data element, a new CSV row, a new DOT statement, a
  new terminal line);
- text meant for people shows control and invisible characters as visible
  escapes (``\\n``, ``\\u202e``) instead of acting on them;
- a name that Kubernetes or Cilium would reject is never put into a policy:
  :func:`is_dns_name`, :func:`is_label_key` and :func:`is_label_value` say so
  first, and :func:`k8s_name` derives valid object names.

YAML and JSON escape through their emitters; SQL uses parameters only. Pure.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

_REPLACEMENT = "\ufffd"


def _is_control(char: str) -> bool:
    return unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp")


def terminal(text: str) -> str:
    """``text`` safe to print on one terminal line: non-printables as escapes, ``\\`` doubled."""
    if text.isprintable() and "\\" not in text:  # the common case, fast
        return text
    out: list[str] = []
    for char in text:
        if char == "\\":
            out.append("\\\\")
        elif char.isprintable():
            out.append(char)
        elif char == "\n":
            out.append("\\n")
        elif char == "\r":
            out.append("\\r")
        elif char == "\t":
            out.append("\\t")
        elif ord(char) < 0x100:
            out.append(f"\\x{ord(char):02x}")
        elif ord(char) < 0x10000:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    return "".join(out)


def _no_controls(text: str) -> str:
    if text.isascii() and text.isprintable():  # the common case, fast
        return text
    return "".join(_REPLACEMENT if _is_control(char) else char for char in text)


def cef_header(text: str) -> str:
    """A CEF header field: ``\\`` and ``|`` escaped, line breaks and controls replaced."""
    text = text.replace("\r", " ").replace("\n", " ")
    return _no_controls(text).replace("\\", "\\\\").replace("|", "\\|")


def cef_value(text: str) -> str:
    """A CEF extension value: ``\\``, ``=`` and line breaks escaped, other controls replaced."""
    text = text.replace("\\", "\\\\").replace("=", "\\=")
    text = text.replace("\n", "\\n").replace("\r", "\\r")
    return _no_controls(text)


def sd_param_value(text: str) -> str:
    """An RFC 5424 PARAM-VALUE: ``\\``, ``"`` and ``]`` escaped, controls replaced."""
    text = _no_controls(text)
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def syslog_header_field(text: str | None, max_length: int) -> str:
    """An RFC 5424 header field: printable US-ASCII only, at most ``max_length``, else ``-``."""
    if not text:
        return "-"
    cleaned = "".join(char if 33 <= ord(char) <= 126 else "_" for char in text)
    return cleaned[:max_length]


def dot_string(text: str) -> str:
    """A double-quoted Graphviz string that renders as :func:`terminal` shows ``text``.

    Graphviz reads ``\\N``, ``\\l`` and friends as escapes and ``&lt;`` as an
    entity in labels, so backslashes and ampersands are escaped too.
    """
    visible = terminal(text)
    escaped = visible.replace("\\", "\\\\").replace('"', '\\"').replace("&", "&amp;")
    return f'"{escaped}"'


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(text: str) -> str:
    """A CSV cell that a spreadsheet shows as text, never runs as a formula (OWASP)."""
    return "'" + text if text.startswith(_FORMULA_START) else text


_DNS_LABEL = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")


def is_dns_name(text: str) -> bool:
    """True for a plain DNS name (letters, digits, ``-``, ``_``; labels of 1-63; 253 in all)."""
    if not text or len(text) > 253:
        return False
    return all(_DNS_LABEL.match(label) for label in text.rstrip(".").split("."))


_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$")
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_SUBDOMAIN_PART = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")


def is_label_value(text: str) -> bool:
    """True for a valid Kubernetes label value (empty, or up to 63 of ``[A-Za-z0-9_.-]``)."""
    return text == "" or bool(_LABEL_NAME.match(text))


def is_label_key(text: str) -> bool:
    """True for a valid Kubernetes label key (``[prefix/]name``)."""
    prefix, slash, name = text.rpartition("/")
    if slash and not (prefix and len(prefix) <= 253 and is_dns1123_subdomain(prefix)):
        return False
    return bool(_LABEL_NAME.match(name))


def is_dns1123_label(text: str) -> bool:
    """True for a DNS-1123 label: what a namespace name must be."""
    return bool(_DNS1123_LABEL.match(text))


def is_dns1123_subdomain(text: str) -> bool:
    """True for a DNS-1123 subdomain: what most Kubernetes object names must be."""
    return 0 < len(text) <= 253 and all(_SUBDOMAIN_PART.match(part) for part in text.split("."))


def k8s_name(text: str, max_length: int = 253) -> str:
    """A valid object name derived from ``text``: itself when it is one already.

    Otherwise lower-cased, with every run of other characters turned into ``-``,
    cut to fit, and suffixed with a hash of the original so that two different
    inputs never collide.
    """
    if len(text) <= max_length and is_dns1123_subdomain(text):
        return text
    cleaned = re.sub(r"[^a-z0-9.]+", "-", text.lower())
    # a run of dots and dashes holding a dot becomes one dot: no empty or dashed labels
    cleaned = re.sub(r"[.-]*\.[.-]*", ".", cleaned).strip(".-")
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    head = cleaned[: max_length - len(digest) - 1].rstrip(".-")
    return f"{head}-{digest}" if head else f"x-{digest}"

"""Validated readers of topology fields: each names the offending key on error.

Every reader takes the raw value (or its mapping and key) and a ``where``
path such as ``workloads[2].service``, and raises
:class:`~lab.errors.TopologyError` saying what was expected there.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from typing import Any

from lab.errors import TopologyError
from lab.ranges import CLUSTER_RANGES

DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
DNS_NAME = re.compile(
    r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$"
)


def mapping(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise TopologyError(f"{where}: expected a mapping, got {type(value).__name__}")
    return value


def keys(raw: Mapping[str, Any], where: str, required: set[str], optional: set[str]) -> None:
    for key in raw:
        if key not in required and key not in optional:
            allowed = ", ".join(sorted(required | optional))
            raise TopologyError(f"{where}: unknown key {key!r} (expected one of: {allowed})")
    for key in sorted(required):
        if key not in raw:
            raise TopologyError(f"{where}.{key}: missing")


def list_of(raw: Mapping[str, Any], key: str, where: str, default: list[Any]) -> Sequence[Any]:
    value = raw.get(key, default)
    if value is None:
        return default
    if not isinstance(value, list):
        raise TopologyError(f"{where}.{key}: expected a list, got {type(value).__name__}")
    return value


def string(raw: Mapping[str, Any], key: str, where: str, default: str | None = None) -> str:
    value = raw.get(key, default)
    if value is None:
        raise TopologyError(f"{where}.{key}: missing")
    return str_item(value, f"{where}.{key}")


def str_item(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise TopologyError(f"{where}: expected a string, got {value!r}")
    return value


def flag(raw: Mapping[str, Any], key: str, where: str) -> bool:
    value = raw.get(key, False)
    if not isinstance(value, bool):
        raise TopologyError(f"{where}.{key}: expected true or false, got {value!r}")
    return value


def whole(raw: Mapping[str, Any], key: str, where: str, default: int, low: int, high: int) -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise TopologyError(f"{where}.{key}: {value!r} must be a whole number in [{low}, {high}]")
    return value


def port(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise TopologyError(f"{where}: {value!r} is not a port (1-65535)")
    return value


def ports(raw: Mapping[str, Any], key: str, where: str, required: bool = False) -> tuple[int, ...]:
    values = list_of(raw, key, where, [])
    if required and not values:
        raise TopologyError(f"{where}.{key}: needs at least one port")
    ports = tuple(port(v, f"{where}.{key}[{i}]") for i, v in enumerate(values))
    unique(ports, f"{where}.{key}")
    return ports


def label(value: object, where: str) -> str:
    text = str_item(value, where)
    if not DNS_LABEL.match(text) or "--" in text[:4]:
        raise TopologyError(f"{where}: {text!r} is not a DNS label (a-z, 0-9, '-', at most 63)")
    return text


def dns_name(value: object, where: str) -> str:
    text = str_item(value, where).strip().rstrip(".").lower()
    if not DNS_NAME.match(text):
        raise TopologyError(f"{where}: {text!r} is not a DNS name")
    return text


def ref(value: object, where: str) -> str:
    text = str_item(value, where)
    namespace, sep, name = text.partition("/")
    if not sep or not DNS_LABEL.match(namespace) or not DNS_LABEL.match(name):
        raise TopologyError(f"{where}: {text!r} must be 'namespace/workload'")
    return text


def is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def literal_ip(value: object, where: str) -> str:
    """A called address: anything the lab can hold (a lab range, or an "internet" address)."""
    address = ipaddress.ip_address(str_item(value, where))
    if any(address in network for network in CLUSTER_RANGES):
        return str(address)
    return external_ip(value, where)


def external_ip(value: object, where: str) -> str:
    """A canonical address that may live in the lab's "internet" namespace."""
    try:
        address = ipaddress.ip_address(str_item(value, where))
    except ValueError:
        raise TopologyError(f"{where}: {value!r} is not an IP address") from None
    if (
        address.is_loopback
        or address.is_multicast
        or address.is_unspecified
        or address.is_link_local
    ):
        raise TopologyError(f"{where}: {address} cannot be an external address")
    for network in CLUSTER_RANGES:
        if address in network:
            raise TopologyError(f"{where}: {address} is inside the lab's range {network}")
    return str(address)


def unique(values: Sequence[object], where: str) -> None:
    seen: set[object] = set()
    for value in values:
        if value in seen:
            raise TopologyError(f"{where}: {value!r} appears twice")
        seen.add(value)

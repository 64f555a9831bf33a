"""The lab's network as commands: namespaces, routed veths, routes and nftables.

The builders are pure (plan in, argv lists and nftables text out), so what
the lab will do can be read and tested without root. :func:`run_commands` is
the thin runner: it batches consecutive ``ip -n NS ...`` commands of one
namespace into a single ``ip -batch`` and turns a failure into a
:class:`~lab.errors.LabError` naming the command and its error;
:func:`remove_pod_network` takes one pod's network away again (churn).

Shape (no bridge anywhere, so DNAT on a node sees both directions)::

    pod (eth0: its /32 and /128) ==veth== node (p<N>: 169.254.1.1, fe80::1; /32 route to the pod)
    node (eth0: 172.31.250.<10+i>) ==veth== fabric (n<i>: routes the node's pod ranges to it)
    internet (eth0: every external address) ==veth== fabric (inet0)

Every "downstream" end routes ``default via`` its single link: a pod via
``169.254.1.1`` / ``fe80::1`` (its node), a node or the internet via
``172.31.250.1`` / ``fe80::1`` (the fabric). The fabric plays the data-centre network between
nodes and the way out to the internet; it answers service ranges with ICMP
unreachable (a service without a live backend refuses quickly).

Each node's nftables table (``inet cml-<lab>``) translates service addresses
the way kube-proxy's nftables mode does: one ``vmap`` from (address, protocol,
port) to a service chain, ``numgen random`` over its endpoint chains, each of
which marks hairpin traffic (a pod reaching itself) for masquerade and DNATs.
"""

from __future__ import annotations

import ipaddress
import subprocess
from collections.abc import Iterable, Sequence

from lab.addressing import Plan, PodPlan
from lab.errors import LabError
from lab.ranges import FABRIC_V4, FABRIC_V6, GATEWAY_V4, GATEWAY_V6

Command = tuple[str, ...]
HAIRPIN_MARK = "0x00004000"
_ROUTER_SYSCTLS = ("net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
_COMMON_SYSCTLS = (
    "net.ipv6.conf.all.accept_dad=0",
    "net.ipv6.conf.default.accept_dad=0",
    "net.ipv4.conf.all.rp_filter=0",
    "net.ipv4.conf.default.rp_filter=0",
)


def _ip(netns: str, *args: str) -> Command:
    return ("ip", "-n", netns, *args)


def namespace_commands(netns: str, router: bool = False) -> list[Command]:
    """Create one namespace with loopback up (and forwarding on for a router)."""
    sysctls = (*_COMMON_SYSCTLS, *(_ROUTER_SYSCTLS if router else ()))
    return [
        ("ip", "netns", "add", netns),
        ("ip", "netns", "exec", netns, "sysctl", "-qw", *sysctls),
        _ip(netns, "link", "set", "lo", "up"),
    ]


def _downlink(
    upper: str,
    upper_if: str,
    lower: str,
    addresses: Sequence[str],
    routed: Iterable[str] = (),
    gateway: str = GATEWAY_V4,
) -> list[Command]:
    """A routed veth: ``lower``'s eth0 holds ``addresses``, ``upper`` routes them (and more)."""
    commands: list[Command] = [
        (
            "ip",
            "link",
            "add",
            "eth0",
            "netns",
            lower,
            "type",
            "veth",
            "peer",
            "name",
            upper_if,
            "netns",
            upper,
        ),
        _ip(upper, "addr", "add", f"{gateway}/32", "dev", upper_if),
        _ip(upper, "addr", "add", f"{GATEWAY_V6}/64", "dev", upper_if, "nodad"),
        _ip(upper, "link", "set", upper_if, "up"),
    ]
    for address in addresses:
        length = 32 if ipaddress.ip_address(address).version == 4 else 128
        flags = ("nodad",) if length == 128 else ()
        commands.append(_ip(lower, "addr", "add", f"{address}/{length}", "dev", "eth0", *flags))
    commands += [
        _ip(lower, "link", "set", "eth0", "up"),
        _ip(lower, "route", "add", gateway, "dev", "eth0", "scope", "link"),
        _ip(lower, "route", "add", "default", "via", gateway, "dev", "eth0"),
    ]
    if any(ipaddress.ip_address(a).version == 6 for a in addresses):
        commands.append(_ip(lower, "route", "add", "::/0", "via", GATEWAY_V6, "dev", "eth0"))
    commands += [_ip(upper, "route", "add", address, "dev", upper_if) for address in addresses]
    commands += [_ip(upper, "route", "add", *route.split()) for route in routed]
    return commands


def fabric_commands(plan: Plan) -> list[Command]:
    """The fabric, every node and the internet, linked and routed; no pods yet."""
    fabric = plan.fabric_netns
    commands = namespace_commands(fabric, router=True)
    commands.append(_ip(fabric, "addr", "add", f"{FABRIC_V6}/128", "dev", "lo"))
    for node in plan.nodes:
        commands += namespace_commands(node.netns, router=True)
        behind = (
            f"{node.pod_cidr_v4} via {node.ipv4} dev {node.uplink} onlink",
            f"{node.pod_cidr_v6} via {node.ipv6} dev {node.uplink} onlink",
        )
        commands += _downlink(fabric, node.uplink, node.netns, node.ips, behind, FABRIC_V4)
    commands += namespace_commands(plan.internet_netns)
    commands += _downlink(fabric, "inet0", plan.internet_netns, plan.internet_ips, (), FABRIC_V4)
    commands += [
        _ip(fabric, "route", "add", "unreachable", str(plan.ranges.service_v4)),
        _ip(fabric, "route", "add", "unreachable", str(plan.ranges.service_v6)),
    ]
    return commands


def pod_commands(plan: Plan, pod: PodPlan) -> list[Command]:
    """One pod's namespace and its routed veth to its node (nothing for host network)."""
    if pod.host_network or pod.veth is None:
        return []
    node = plan.node(pod.node)
    return namespace_commands(pod.netns) + _downlink(node.netns, pod.veth, pod.netns, pod.ips)


def build_commands(plan: Plan) -> list[Command]:
    """Everything the plan's starting network needs, in order."""
    commands = fabric_commands(plan)
    for pod in plan.pods:
        commands += pod_commands(plan, pod)
    return commands


def table_name(plan: Plan) -> str:
    return f"cml-{plan.topology.name}"


def nft_ruleset(plan: Plan, pods: Sequence[PodPlan]) -> str:
    """A node's service translation for the live ``pods``, replacing any earlier version."""
    table = table_name(plan)
    chains: list[str] = []
    matches: dict[int, list[str]] = {4: [], 6: []}
    for service in plan.services:
        if service.type != "ClusterIP":
            continue
        backends = [p for p in pods if p.ref in service.workloads]
        for port in service.ports:
            proto = port.protocol.lower()
            for cluster_ip in service.cluster_ips:
                version = ipaddress.ip_address(cluster_ip).version
                targets = [(p, ip) for p in backends for ip in p.ips if _version(ip) == version]
                if not targets:
                    continue
                chain = f"svc-{service.namespace}-{service.name}-{proto}-{port.port}-v{version}"
                matches[version].append(f"{cluster_ip} . {proto} . {port.port} : goto {chain}")
                named = [(p.key, ip) for p, ip in targets]
                chains += _service_chains(chain, proto, port.port, version, named)
    for imported in plan.imports:
        # A clusterset service: the exporting clusters' pods, reached over the peering.
        for number in imported.service.ports:
            chain = f"mcs-{imported.service.namespace}-{imported.service.name}-tcp-{number}-v4"
            matches[4].append(f"{imported.ip} . tcp . {number} : goto {chain}")
            chains += _service_chains(chain, "tcp", number, 4, list(imported.service.backends))
    lines = [
        f"add table inet {table}",
        f"delete table inet {table}",
        f"table inet {table} {{",
        _base_chain("prerouting", "nat hook prerouting priority dstnat", "jump services"),
        # host-network processes reach services too: their packets only pass output
        _base_chain("output", "nat hook output priority -100", "jump services"),
        _base_chain(
            "postrouting",
            "nat hook postrouting priority srcnat",
            f"meta mark & {HAIRPIN_MARK} == {HAIRPIN_MARK} masquerade",
        ),
        "\tchain services {",
    ]
    for version, family in ((4, "ip"), (6, "ip6")):
        if matches[version]:
            entries = ",\n\t\t\t".join(matches[version])
            lines.append(
                f"\t\t{family} daddr . meta l4proto . th dport vmap {{\n\t\t\t{entries}\n\t\t}}"
            )
    lines.append("\t}")
    lines += chains
    lines.append("}")
    return "\n".join(lines) + "\n"


def _base_chain(name: str, hook: str, rule: str) -> str:
    return f"\tchain {name} {{\n\t\ttype {hook}; policy accept;\n\t\t{rule}\n\t}}"


def _service_chains(
    chain: str, proto: str, port: int, version: int, targets: list[tuple[str, str]]
) -> list[str]:
    """A service's chain: one of ``targets`` (a pod's name for the comment, its IP) at random."""
    family = "ip" if version == 4 else "ip6"
    endpoint_chains = []
    verdicts = []
    for index, (pod, ip) in enumerate(targets):
        name = f"{chain}-ep{index}"
        where = ip if version == 4 else f"[{ip}]"
        rules = [
            f"\t\t{family} saddr {ip} meta mark set meta mark | {HAIRPIN_MARK}",
            f'\t\tmeta l4proto {proto} dnat {family} to {where}:{port} comment "{pod}"',
        ]
        endpoint_chains.append(f"\tchain {name} {{\n" + "\n".join(rules) + "\n\t}")
        verdicts.append(f"{index} : goto {name}")
    spread = f"numgen random mod {len(targets)} vmap {{ {', '.join(verdicts)} }}"
    return [f"\tchain {chain} {{\n\t\t{spread}\n\t}}", *endpoint_chains]


def _version(ip: str) -> int:
    return ipaddress.ip_address(ip).version


# --- the thin runner ---------------------------------------------------------------


def remove_pod_network(plan: Plan, pod: PodPlan) -> None:
    """Delete ``pod``'s veth at its node, then its namespace (either may be gone already).

    The veth goes first because deleting it takes both ends and the node's
    routes to the pod at once, while deleting only the namespace leaves them
    until the kernel's cleanup of that namespace, which runs later on a work
    queue (seconds when other namespaces come and go): a new pod's route to
    the same address would meet "File exists".
    """
    if pod.host_network or pod.veth is None:
        return
    node = plan.node(pod.node).netns
    subprocess.run(_ip(node, "link", "del", pod.veth), capture_output=True, check=False)
    subprocess.run(["ip", "netns", "del", pod.netns], capture_output=True, check=False)


def run_commands(commands: Sequence[Command]) -> None:
    """Run ``commands`` in order; consecutive plain ``ip -n NS`` ones go as one batch."""
    index = 0
    while index < len(commands):
        command = commands[index]
        netns = _batchable(command)
        if netns is None:
            _run(command)
            index += 1
            continue
        batch = [command]
        while (
            index + len(batch) < len(commands) and _batchable(commands[index + len(batch)]) == netns
        ):
            batch.append(commands[index + len(batch)])
        if len(batch) == 1:
            _run(command)
        else:
            text = "".join(" ".join(c[3:]) + "\n" for c in batch)
            _run(("ip", "-n", netns, "-batch", "-"), stdin=text, shown=batch)
        index += len(batch)


def _batchable(command: Command) -> str | None:
    if len(command) > 3 and command[:2] == ("ip", "-n") and not command[3].startswith("-"):
        return command[2]
    return None


def _run(command: Command, stdin: str | None = None, shown: Sequence[Command] = ()) -> None:
    try:
        result = subprocess.run(command, input=stdin, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise LabError(f"cannot run {command[0]}: {exc.strerror}") from None
    if result.returncode != 0:
        what = (
            " ".join(command)
            if not shown
            else " ".join(shown[_failed_line(result.stderr, len(shown))])
        )
        raise LabError(f"`{what}` failed: {result.stderr.strip() or result.stdout.strip()}")


def _failed_line(stderr: str, count: int) -> int:
    """The batch line ``ip`` reports as failed (``Command failed -:3``), 0-based."""
    for line in stderr.splitlines():
        if line.startswith("Command failed -:"):
            number = line.rsplit(":", 1)[-1]
            if number.isdigit():
                return min(int(number), count) - 1
    return 0

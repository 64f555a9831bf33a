"""Churn on a running lab: pods deleted, their IPs handed to new pods.

:func:`run_churn` performs the topology's churn steps that have not happened
yet, each ``at`` seconds after the calls were released (``lab up`` without
``--hold``, or ``lab go``); it takes a clock and a sleep so tests need not
wait. One step (:func:`apply_step`):

1. stops the victim pod's caller, deletes its veth (and with it the node's
   routes to it) and its namespace, and marks it ``deleted`` in the state;
2. in a lab with an API server (``--kubernetes``): deletes the victim's Pod,
   creates the replacement Pod (a new uid, the victim's addresses) and its
   controllers if new, and updates the EndpointSlices that change, before
   the replacement's process exists;
3. creates the replacement pod, holding the victim's exact addresses, on the
   victim's node, and starts its caller with the calls already released;
4. rewrites every node's nftables (service backends change), the DNS hosts
   (headless and ``*.pod`` names change; dnsmasq re-reads on SIGHUP) and the
   inventory file, where the victim keeps its entry with ``deleted`` set and
   the replacement appears; then the state file.

A step with ``pending_for`` lists its replacement that long before the step
(:func:`announce_pending`): in the inventory without IPs, as a Pending pod the
scheduler has placed but whose sandbox has no network yet; at the step it
gets the victim's IPs, ``ips_since`` the step's time. (Not in labs with an
API server: there the replacement is created at the step.)

The replacement's pod plan comes from :func:`lab.addressing.plan`, so the
truth already knows it.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

from lab.addressing import ChurnStep, PodPlan
from lab.errors import LabError
from lab.kubelab import LabCluster
from lab.netbuild import pod_commands, remove_pod_network, run_commands
from lab.processes import ETC_NETNS, stop
from lab.runtime import Lab, node_states, reload_dns
from lab.state import LabState, PodState, ProcessState, load_state, save_state


def run_churn(
    state_dir: Path,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], object] = time.sleep,
    on_step: Callable[[ChurnStep], None] | None = None,
) -> LabState:
    """Apply the remaining churn steps on schedule; return the final state."""
    state = load_state(state_dir)
    if state.released is None:
        raise LabError("the lab's calls are held: run `callmap lab go` before churn")
    lab = Lab.load(state.topology, state_dir, state.member)
    for index in range(state.churn_done, len(lab.plan.churn)):
        step = lab.plan.churn[index]
        if step.pending_for and step.replacement is not None:
            if state.kube is not None:
                raise LabError(f"churn[{index}]: pending_for is not supported with --kubernetes")
            if _waiting(state, step.replacement) is None:
                delay = state.released + step.at - step.pending_for - clock()
                if delay > 0:
                    sleep(delay)
                announce_pending(lab, state, step.replacement, clock())
        delay = state.released + step.at - clock()
        if delay > 0:
            sleep(delay)
        apply_step(lab, state, index, clock())
        if on_step is not None:
            on_step(step)
    return state


def apply_step(lab: Lab, state: LabState, index: int, now: float) -> None:
    """Perform churn step ``index`` on the running lab described by ``state``."""
    step = lab.plan.churn[index]
    victim = next(
        (
            p
            for p in state.live_pods()
            if (p.namespace, p.name) == (step.victim.namespace, step.victim.name)
        ),
        None,
    )
    if victim is None:
        raise LabError(f"churn[{index}]: pod {step.victim.key} is not running")
    if victim.pid is not None:
        stop([victim.pid])
    remove_pod_network(lab.plan, step.victim)
    shutil.rmtree(ETC_NETNS / victim.netns, ignore_errors=True)
    victim.deleted = now
    state.processes = [p for p in state.processes if p.pid != victim.pid]
    if state.kube is not None:
        with LabCluster(state.kube) as cluster:
            cluster.churn(lab.plan, index, now)
    if step.replacement is not None:
        pod = step.replacement
        run_commands(pod_commands(lab.plan, pod))
        pod_state = lab.start_caller(pod, hold=False)
        pod_state.created = now
        waiting = _waiting(state, pod)
        if waiting is not None:  # it was Pending: created then, its IPs from now
            pod_state.created, pod_state.ips_since = waiting.created, now
            state.pods.remove(waiting)
        state.pods.append(pod_state)
        state.processes.append(
            ProcessState(pid=pod_state.pid or 0, role="caller", netns=pod.netns, what=pod.key)
        )
    live = lab.plan.pods_in_phase(index + 1)
    lab.apply_nft(live)
    lab.write_dns(live, log_queries=_logs_queries(lab))
    reload_dns(state)
    lab.write_inventory(state.pods)
    state.nodes = node_states(lab, state.pods)
    state.churn_done = index + 1
    save_state(state)


def announce_pending(lab: Lab, state: LabState, pod: PodPlan, now: float) -> None:
    """List ``pod`` as Pending: in the state and the inventory, without IPs or a process."""
    state.pods.append(
        PodState(
            namespace=pod.namespace,
            name=pod.name,
            workload=pod.ref,
            node=pod.node,
            netns=pod.netns,
            ips=[],
            host_network=pod.host_network,
            created=now,
            pending=True,
        )
    )
    lab.write_inventory(state.pods)
    save_state(state)


def _waiting(state: LabState, pod: PodPlan) -> PodState | None:
    """``pod``'s Pending entry, if it has one."""
    key = (pod.namespace, pod.name)
    return next((p for p in state.pods if p.pending and (p.namespace, p.name) == key), None)


def _logs_queries(lab: Lab) -> bool:
    conf = lab.state_dir / "dns" / "dnsmasq.conf"
    return conf.exists() and "log-queries" in conf.read_text().splitlines()

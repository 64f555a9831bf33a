"""cgroup files read as the kubelet and the kernel write them."""

from __future__ import annotations

import pytest

from capture.procparse import pod_uid_from_cgroup

UID = "0f5f3a57-3b4e-4a5c-9a43-1c2d3e4f5a6b"
UID_ = UID.replace("-", "_")
CTR = "5c0ffee0" * 8  # a 64-hex container id


CGROUP_V1_CGROUPFS = f"""\
12:pids:/kubepods/burstable/pod{UID}/{CTR}
11:memory:/kubepods/burstable/pod{UID}/{CTR}
1:name=systemd:/kubepods/burstable/pod{UID}/{CTR}
"""


@pytest.mark.parametrize(
    ("cgroup", "uid"),
    [
        pytest.param(CGROUP_V1_CGROUPFS, UID, id="v1-cgroupfs-burstable"),
        pytest.param(
            f"4:cpu,cpuacct:/kubepods/besteffort/pod{UID}/{CTR}\n", UID, id="v1-cgroupfs-besteffort"
        ),
        # Guaranteed pods sit directly under kubepods, with no QoS level.
        pytest.param(f"4:cpu,cpuacct:/kubepods/pod{UID}/{CTR}\n", UID, id="v1-cgroupfs-guaranteed"),
        pytest.param(
            f"3:memory:/kubepods.slice/kubepods-burstable.slice/"
            f"kubepods-burstable-pod{UID_}.slice/docker-{CTR}.scope\n",
            UID,
            id="v1-systemd-burstable",
        ),
        pytest.param(
            f"0::/kubepods.slice/kubepods-burstable.slice/"
            f"kubepods-burstable-pod{UID_}.slice/cri-containerd-{CTR}.scope\n",
            UID,
            id="v2-systemd-burstable",
        ),
        pytest.param(
            f"0::/kubepods.slice/kubepods-besteffort.slice/"
            f"kubepods-besteffort-pod{UID_}.slice/crio-{CTR}.scope\n",
            UID,
            id="v2-systemd-besteffort-crio",
        ),
        pytest.param(
            f"0::/kubepods.slice/kubepods-pod{UID_}.slice/cri-containerd-{CTR}.scope\n",
            UID,
            id="v2-systemd-guaranteed",
        ),
        pytest.param(f"0::/kubepods/burstable/pod{UID}/{CTR}\n", UID, id="v2-cgroupfs"),
        pytest.param(
            f"0::/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/"
            f"kubelet-kubepods-besteffort-pod{UID_}.slice/cri-containerd-{CTR}.scope\n",
            UID,
            id="v2-kind-nested",
        ),
        pytest.param(
            f"0::/../../kubepods-besteffort-pod{UID_}.slice/cri-containerd-{CTR}.scope\n",
            UID,
            id="v2-relative-to-own-cgroupns",
        ),
        pytest.param(f"0::/../../../burstable/pod{UID}/{CTR}\n", UID, id="v2-relative-cgroupfs"),
        pytest.param(
            "0::/kubepods.slice/kubepods-burstable.slice/"
            "kubepods-burstable-pod3b8c4a5e9f0d1e2c3b4a5f6e7d8c9b0a.slice/cri-containerd-x.scope\n",
            "3b8c4a5e9f0d1e2c3b4a5f6e7d8c9b0a",
            id="static-pod-md5-uid",
        ),
        pytest.param(
            f"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice\n",
            UID,
            id="process-in-the-pod-slice-itself",
        ),
        pytest.param("0::/system.slice/kubelet.service\n", None, id="host-daemon"),
        pytest.param("0::/\n", None, id="root"),
        pytest.param("0::/init.scope\n", None, id="init"),
        pytest.param("0::/user.slice/user-1000.slice/session-3.scope\n", None, id="user-session"),
        pytest.param("0::/machine.slice/libpod-pod-abc.slice\n", None, id="podman"),
        pytest.param("0::/kubepods.slice/kubepods-burstable.slice\n", None, id="qos-slice-only"),
        pytest.param(f"0::/kubepods/burstable/pod{UID[:-1]}/{CTR}\n", None, id="truncated-uid"),
        pytest.param(f"0::/kubepods/burstable/pod{UID.upper()}/x\n", None, id="upper-case"),
        pytest.param("", None, id="empty"),
        pytest.param("garbage\n\x00\n:::\n", None, id="garbage"),
    ],
)
def test_pod_uid_from_cgroup(cgroup: str, uid: str | None) -> None:
    assert pod_uid_from_cgroup(cgroup) == uid


def test_a_hybrid_cgroup_file_finds_the_pod_on_any_line() -> None:
    hybrid = f"1:name=systemd:/\n0::/kubepods/burstable/pod{UID}/{CTR}\n"

    assert pod_uid_from_cgroup(hybrid) == UID

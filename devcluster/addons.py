"""The cluster's DNS: CoreDNS as a Deployment in kube-system, as kubeadm installs it. Pure.

The objects mirror kubeadm's CoreDNS add-on (ServiceAccount, the ClusterRole
the ``kubernetes`` plugin needs, the Corefile, the ``kube-dns`` Service at the
address every kubelet gives its pods), with two pods so that DNS answers cross
nodes. CoreDNS forwards what is not the cluster's to the upstream in the node's
resolv.conf (``dnsPolicy: Default``): the development cluster's internet.

One addition to kubeadm's Corefile: ``autopath @kubernetes`` (with ``pods
verified``, which it needs), a common production setting. A pod's lookup of
``api.example.com`` then comes back at its first search-path try
(``api.example.com.<ns>.svc.cluster.local``) as a CNAME to the name meant, the
shape of answer callmap must not take for a service.
"""

from __future__ import annotations

from typing import Any

from devcluster.layout import CLUSTER_DOMAIN, DNS_SERVICE_IP

NAMESPACE = "kube-system"
LABELS = {"k8s-app": "kube-dns"}


def corefile(domain: str = CLUSTER_DOMAIN) -> str:
    return f""".:53 {{
    errors
    health {{
       lameduck 5s
    }}
    ready
    autopath @kubernetes
    kubernetes {domain} in-addr.arpa ip6.arpa {{
       pods verified
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }}
    prometheus :9153
    forward . /etc/resolv.conf {{
       max_concurrent 1000
    }}
    cache 30
    loop
    reload
    loadbalance
}}
"""


def coredns_objects(image: str, replicas: int = 2) -> list[dict[str, Any]]:
    meta = {"name": "coredns", "namespace": NAMESPACE}
    rules = [
        {"apiGroups": [""], "resources": ["endpoints", "services", "pods", "namespaces"],
         "verbs": ["list", "watch"]},
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
         "verbs": ["list", "watch"]},
    ]  # fmt: skip
    probe_port = {"port": 8080, "path": "/health"}
    container = {
        "name": "coredns",
        "image": image,
        "imagePullPolicy": "Never",
        "args": ["-conf", "/etc/coredns/Corefile"],
        "ports": [
            {"name": "dns", "containerPort": 53, "protocol": "UDP"},
            {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"},
            {"name": "metrics", "containerPort": 9153, "protocol": "TCP"},
        ],
        "resources": {"requests": {"cpu": "50m", "memory": "40Mi"}, "limits": {"memory": "170Mi"}},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]},
            "readOnlyRootFilesystem": True,
        },
        "livenessProbe": {"httpGet": probe_port, "initialDelaySeconds": 10, "timeoutSeconds": 5},
        "readinessProbe": {"httpGet": {"port": 8181, "path": "/ready"}, "periodSeconds": 2},
        "volumeMounts": [{"name": "config", "mountPath": "/etc/coredns", "readOnly": True}],
    }
    spread = {
        "maxSkew": 1,
        "topologyKey": "kubernetes.io/hostname",
        "whenUnsatisfiable": "ScheduleAnyway",
        "labelSelector": {"matchLabels": LABELS},
    }
    pod_spec = {
        "serviceAccountName": "coredns",
        "dnsPolicy": "Default",
        "priorityClassName": "system-cluster-critical",
        "topologySpreadConstraints": [spread],
        "containers": [container],
        "volumes": [{"name": "config", "configMap": {"name": "coredns"}}],
    }
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "system:coredns"},
            "rules": rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "system:coredns"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "system:coredns",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "coredns", "namespace": NAMESPACE}],
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": meta,
            "data": {"Corefile": corefile()},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {**meta, "labels": LABELS},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": LABELS},
                "template": {"metadata": {"labels": LABELS}, "spec": pod_spec},
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "kube-dns", "namespace": NAMESPACE, "labels": LABELS},
            "spec": {
                "clusterIP": DNS_SERVICE_IP,
                "selector": LABELS,
                "ports": [
                    {"name": "dns", "port": 53, "protocol": "UDP"},
                    {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
                    {"name": "metrics", "port": 9153, "protocol": "TCP"},
                ],
            },
        },
    ]

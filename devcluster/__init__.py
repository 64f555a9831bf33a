"""A real Kubernetes cluster on one machine, for development and tests: ``callmap dev cluster``.

Nodes are namespaces of this machine (mount, network, PID, UTS), each running
containerd, a kubelet and kube-proxy; the control plane (kube-apiserver, etcd,
kube-controller-manager, kube-scheduler) runs beside them; CoreDNS runs as a
Deployment. Every binary and image is built on this machine and cached.
"""

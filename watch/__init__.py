"""callmap watch: who holds which IP, from the Kubernetes API or an inventory file.

The watcher publishes ``PodIdentity``, ``ServiceIdentity`` and ``NodeIdentity``
records to the compacted identity topics, so that the stream app can resolve
an address to the pod, service or node that held it. It imports only the core
package ``callmap``; see docs/watch.md.
"""

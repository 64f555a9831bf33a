"""Development servers and tools: a local Kafka broker, a Kubernetes API server, helm,
process bookkeeping, and the ``callmap dev`` command. Beside the product: no service
and not the shared runtime imports them, and the image does not hold them."""

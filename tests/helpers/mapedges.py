"""Small maps for the map commands' unit tests: workloads and edges in cluster ``prod``."""

from __future__ import annotations

from callmap.wire import Edge, Endpoint


def workload(name: str, namespace: str = "shop", service: str | None = None) -> Endpoint:
    return Endpoint(
        type="workload", namespace=namespace, name=name, kind="Deployment", service=service
    )


def edge(
    client: Endpoint, server: Endpoint, first: float = 100.0, event: str = "new", count: int = 1
) -> Edge:
    """A call seen by DNS on port 8080, first at ``first`` and last 10 s later."""
    return Edge(
        edge_id=f"{client.name}->{server.name or server.dns_name}",
        event=event,  # type: ignore[arg-type]
        cluster="prod",
        client=client,
        server=server,
        ports=(8080,),
        sources=("dns",),
        first_seen=first,
        last_seen=first + 10,
        count=count,
    )

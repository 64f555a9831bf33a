"""The log lines that say a service is ready, for whoever runs it as a process.

The lab and the tests start the services as processes and wait for these lines
in their output; the services log them. Kept here, in the shared runtime, so
both sides read the same text without the lab importing a service.
"""

from __future__ import annotations

CAPTURE_RUNNING = "capture running on node"
"""How the capture agent's log line starts once every source is open (packet
sockets, the connection tracking subscription): what is sent from then on is
seen, and a call made before it may go unseen."""

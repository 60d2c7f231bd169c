"""``[core] hostname_callable`` for the topology run: each Celery worker names its own host.

Both workers run on one machine, so the default (the machine's FQDN) would record the same
hostname for every task instance. Each worker gets ``METI_TOPOLOGY_HOST`` in its environment,
as each would have its own host name on a machine of its own; other components use the FQDN.
"""

from __future__ import annotations

import os
import socket


def hostname() -> str:
    return os.environ.get("METI_TOPOLOGY_HOST") or socket.getfqdn()

"""Loopback TCP load that makes the kernel allocate pages in NET_RX softirq.

On loopback the receive path runs in the NET_RX softirq (netif_rx -> backlog
-> net_rx_action). Bulk data allocates almost nothing there (the sender's
skbs are passed along), but every accepted connection is created there:
tcp_v4_syn_recv_sock -> sk_clone_lock allocates the child socket from slab,
and holding thousands of them open makes the slab grow, i.e. take order-0
and order-3 pages from the page allocator, in NET_RX (seen on 6.18: 3000
connections gave ~400 page allocations in NET_RX).
"""

from __future__ import annotations

import os
import socket
import time

from paftrace.workloads.childproc import raise_open_files


def loopback_connections(seconds: float, held: int = 2000) -> int:
    """Open connections to ourselves in rounds of `held`, holding each round open
    until it is complete; returns the number of connections made."""
    # Two fds per connection, within what is left of the limit (a caller may
    # already hold many: systemd's default soft limit is 1024).
    in_use = len(os.listdir("/proc/self/fd"))
    held = max(1, min(held, (raise_open_files(2 * held + in_use + 64) - in_use - 64) // 2))
    made = 0
    deadline = time.monotonic() + seconds
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(4096)
        while time.monotonic() < deadline:
            open_socks: list[socket.socket] = []
            try:
                for _ in range(held):
                    open_socks.append(socket.create_connection(server.getsockname()))
                    open_socks.append(server.accept()[0])
                    made += 1
                    if time.monotonic() >= deadline:
                        break
            finally:
                for sock in open_socks:
                    sock.close()
    return made

"""ICMP echo, one request at a time, with a raw socket: the receiver's kernel builds each
reply in the NET_RX softirq (icmp_rcv -> icmp_echo -> icmp_reply -> __ip_append_data), and
a reply as large as the request needs a buffer as large. When that allocation fails the
reply is dropped, so a lost reply is a failure seen from user space."""

from __future__ import annotations

import select
import socket
import struct
import time
from dataclasses import dataclass

ECHO_REQUEST, ECHO_REPLY = 8, 0
IP_HEADER, ICMP_HEADER = 20, 8
SO_RCVBUFFORCE = 33  # include/uapi/asm-generic/socket.h (x86, arm64; not in Python's socket)


def ones_complement_sum(data: bytes) -> int:
    """RFC 1071 sum of 16-bit words, not yet complemented."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def echo_request(ident: int, seq: int, payload_sum: int) -> bytes:
    """The ICMP header of a request whose payload sums to `payload_sum`."""
    total = ones_complement_sum(struct.pack("!BBHHH", ECHO_REQUEST, 0, 0, ident, seq))
    total += payload_sum
    total = (total & 0xFFFF) + (total >> 16)
    return struct.pack("!BBHHH", ECHO_REQUEST, 0, ~total & 0xFFFF, ident, seq)


@dataclass
class EchoStats:
    sent: int = 0
    replies: int = 0
    # Where the loop's time went: a slow loop sends too few requests for the held replies
    # to use up the atomic reserve (the kernel matrix's 1 GiB guests, 2026-12-03).
    sending_s: float = 0.0
    waiting_s: float = 0.0
    slowest_s: float = 0.0

    @property
    def lost(self) -> int:
        return self.sent - self.replies


def _is_reply(packet: bytes, ident: int, seq: int) -> bool:
    header = (packet[0] & 0x0F) * 4  # raw IPv4 sockets deliver the IP header
    if len(packet) < header + ICMP_HEADER:
        return False
    kind, _, _, got_ident, got_seq = struct.unpack_from("!BBHHH", packet, header)
    return kind == ECHO_REPLY and got_ident == ident and got_seq == seq


def echo_loop(sock: socket.socket, dst: str, size: int, seconds: float, max_count: int,
              max_lost: int | None = None, reply_timeout: float = 0.05) -> EchoStats:
    """Send `size`-byte echo requests to `dst`, each after the previous reply or its
    timeout, for `seconds`, `max_count` requests or `max_lost` lost replies, whichever
    ends first."""
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    payload_sum = ones_complement_sum(payload)
    ident = (id(sock) >> 4) & 0xFFFF
    stats = EchoStats()
    deadline = time.monotonic() + seconds
    while (stats.sent < max_count and (max_lost is None or stats.lost < max_lost)
           and (start := time.monotonic()) < deadline):
        seq = stats.sent & 0xFFFF
        sock.sendto(echo_request(ident, seq, payload_sum) + payload, (dst, 0))
        stats.sent += 1
        sent_at = time.monotonic()
        wait_until = sent_at + reply_timeout
        while (left := wait_until - time.monotonic()) > 0:
            if not select.select([sock], [], [], left)[0]:
                break
            if _is_reply(sock.recv(size + 1024), ident, seq):
                stats.replies += 1
                break
        end = time.monotonic()
        stats.sending_s += sent_at - start
        stats.waiting_s += end - sent_at
        stats.slowest_s = max(stats.slowest_s, end - start)
    return stats


def raw_icmp_socket() -> socket.socket:
    return socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)


class ReplyHolder:
    """A second raw ICMP socket beside the sender's, not read while it holds.

    Every raw socket of the protocol gets a clone of each reply (net/ipv4/raw.c,
    raw_v4_input), and a clone shares the reply's data buffer: while the clone waits in
    this socket's queue, the reply's buffer stays allocated — a block of the reply's order
    that the NET_RX softirq got with GFP_ATOMIC, from the reserves ordinary allocations
    cannot touch (__GFP_HIGH halves the min watermark: mm/page_alloc.c,
    __zone_watermark_ok). So each reply that still succeeds takes one more such block, until
    none is left and the next ones fail; a socket nobody reads, as in life. Bounded by
    `limit` bytes of queue (SO_RCVBUFFORCE, root; the kernel doubles what it is given).
    Create it in the sender's namespace, before the replies that it should hold."""

    def __init__(self, limit: int) -> None:
        self.sock = raw_icmp_socket()
        self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, max(1, min(limit, 2**31 - 1) // 2))

    def release(self) -> int:
        """Close it, freeing what it held; returns how many replies it held."""
        held = 0
        with self.sock:
            while select.select([self.sock], [], [], 0)[0]:
                self.sock.recv(1)  # a datagram is dequeued whole however little is read
                held += 1
        return held

"""Ports for the servers tests start: below the kernel's ephemeral range, so that no outgoing
connection of a parallel test can take one between the check and the bind."""

from __future__ import annotations

import random
import socket

LOW, HIGH = 20_000, 32_000  # the ephemeral range here starts at 32768


def free_block(size: int = 3) -> int:
    """A first port of `size` free consecutive ports."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(LOW, HIGH - size)
        try:
            for offset in range(size):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", base + offset))
            return base
        except OSError:
            continue
    raise RuntimeError("no free block of ports")

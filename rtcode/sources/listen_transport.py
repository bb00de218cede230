"""The connections of ``rtcode listen`` (pynetdicom's transport): a request handler
that refuses a PDU longer than allowed before reading it, and a server that keeps a
deep accept queue and lets the listener close connections that never ask for an
association. Imported by ``listen.py`` when it starts (pynetdicom is the
``rtcode[net]`` extra)."""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pynetdicom.transport import RequestHandler, ThreadedAssociationServer

LOG = logging.getLogger("rtcode.sources.listen")


@dataclass(frozen=True)
class Gate:
    """What the transport asks of the listener."""

    read_limit: int  # the longest PDU read (bytes)
    opened: Callable[[Any], None]  # a new connection (its association), not yet asked for
    too_long: Callable[[Any, int], None]  # (association, bytes announced): it is closed
    reap: Callable[[], None]  # close connections that waited too long; called every 0.1 s


class PduTooLong(OSError):
    """The peer announced a PDU longer than the limit: the connection ends unread."""


def bound_reads(sock: Any, limit: int, too_long: Callable[[int], None]) -> None:
    """Make ``sock.recv`` refuse a read longer than ``limit`` bytes: pynetdicom reads a
    PDU with one ``recv`` of the length its header announces, and would read whatever
    length a peer claims although it announced our maximum PDU size. ``too_long`` is
    told the length, then ``PduTooLong`` ends the connection before anything is read."""
    original = sock.recv

    def recv(nr_bytes: int) -> bytearray:
        if nr_bytes > limit:
            too_long(nr_bytes)
            raise PduTooLong("PDU longer than the limit")
        data: bytearray = original(nr_bytes)
        return data

    sock.recv = recv


class BoundedRequestHandler(RequestHandler):
    """pynetdicom's handler, with reads bounded (``bound_reads``), replies sent at once
    and each new connection handed to the listener (``Gate.opened``)."""

    server: ListenServer

    def _create_association(self) -> Any:
        # Small replies (C-STORE-RSP) go out at once: without this, Nagle's algorithm
        # and delayed acknowledgements cost ~40 ms per instance.
        with contextlib.suppress(OSError):
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        assoc = super()._create_association()
        gate = self.server.gate
        assert gate is not None, "ListenServer.gate is set before it serves"
        bound_reads(assoc.dul.socket, gate.read_limit, lambda n: gate.too_long(assoc, n))
        gate.opened(assoc)
        return assoc


class ListenServer(ThreadedAssociationServer):
    """pynetdicom's threaded server; ``gate`` must be set before ``serve_forever``."""

    # Connections queued before they are accepted (socketserver's default is 5): a
    # burst of idle sockets must not keep a planning system out.
    request_queue_size = 128
    gate: Gate | None = None

    def service_actions(self) -> None:  # serve_forever calls it every poll interval
        super().service_actions()
        if self.gate is None:
            return
        try:
            self.gate.reap()
        except Exception:  # never lose the server loop to it
            LOG.exception("cannot close the connections that did not associate")

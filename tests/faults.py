"""A TCP proxy in front of the test server that can cut a connection at a chosen moment.

It lets the tests produce, for real, the fault that makes retries dangerous: the server has
committed a write, and the connection dies before the answer reaches the client.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from psycopg.conninfo import make_conninfo

from devtools.pg import conninfo_params


class CuttingProxy:
    """Forward a local TCP port to a PostgreSQL server (TCP or Unix socket).

    ``cut_after(marker)`` arms it: the next server-to-client chunk that contains ``marker``
    (a command tag such as ``b"INSERT 0 1"``, sent only once the statement has run) is
    dropped and both sides of that connection are closed.
    """

    def __init__(self, server_dsn: str) -> None:
        params = conninfo_params(server_dsn)
        host = params.get("host") or "/var/run/postgresql"
        port = int(params.get("port") or 5432)
        self._upstream: tuple[socket.AddressFamily, str | tuple[str, int]]
        if host.startswith("/"):
            self._upstream = (socket.AF_UNIX, f"{host}/.s.PGSQL.{port}")
        else:
            self._upstream = (socket.AF_INET, (host, port))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        params.update(host="127.0.0.1", port=str(self.port), sslmode="disable")
        self.dsn = make_conninfo("", **params)
        self._marker: bytes | None = None
        self.cuts = 0
        self._lock = threading.Lock()
        self._closed = False
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def cut_after(self, marker: bytes) -> None:
        with self._lock:
            self._marker = marker

    def close(self) -> None:
        """Stop listening and cut every connection: the database is gone for its clients."""
        self._closed = True
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
        self._listener.close()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for s in sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            family, address = self._upstream
            server = socket.socket(family, socket.SOCK_STREAM)
            server.connect(address)
            with self._lock:
                self._sockets += [client, server]
            threading.Thread(target=self._pipe, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, True), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, from_server: bool) -> None:
        try:
            while data := source.recv(65536):
                if from_server and self._should_cut(data):
                    break
                sink.sendall(data)
        except OSError:
            pass
        for s in (source, sink):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def _should_cut(self, data: bytes) -> bool:
        with self._lock:
            if self._marker is not None and self._marker in data:
                self._marker = None
                self.cuts += 1
                return True
        return False


@contextmanager
def cutting_proxy(server_dsn: str) -> Iterator[CuttingProxy]:
    proxy = CuttingProxy(server_dsn)
    try:
        yield proxy
    finally:
        proxy.close()

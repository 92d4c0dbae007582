"""The authenticated driver-worker channel.

Built on :mod:`multiprocessing.connection`: the driver listens on its own address with a random
per-run key, and every peer must pass the HMAC challenge before a single message of theirs is
unpickled. Messages are plain tuples ``(kind, payload)``.
"""

from __future__ import annotations

import logging
import queue
import secrets
import socket
import threading
from multiprocessing.connection import Client, Connection, Listener

logger = logging.getLogger(__name__)

# Message kinds.
HELLO = "hello"  # worker -> driver: (partition, attempt, host, pid)
READY = "ready"  # worker -> driver: shard statistics after loading the data
TRAIN = "train"  # driver -> worker: a train task
EVAL = "eval"  # driver -> worker: an eval task
RESULT = "result"  # worker -> driver: the outcome of a task
ERROR = "error"  # worker -> driver: a task failed (the worker itself is fine)
FATAL = "fatal"  # worker -> driver: the worker cannot go on
STOP = "stop"  # driver -> worker: exit cleanly


class DriverChannel:
    """Listens for workers on ``host`` and hands out accepted, authenticated connections.

    Accepting runs in a daemon thread so that the driver can wait with a timeout and watch the
    Spark job at the same time; a peer with the wrong key is dropped by the handshake.
    """

    def __init__(self, host: str, port: int = 0) -> None:
        self.authkey = secrets.token_bytes(32)
        self._listener = Listener((host, port), family="AF_INET", authkey=self.authkey)
        self.address: tuple[str, int] = self._listener.address
        self._accepted: queue.Queue[Connection] = queue.Queue()
        self._closed = threading.Event()
        self._thread = threading.Thread(
            target=self._accept_loop, name="cerebro-accept", daemon=True
        )
        self._thread.start()

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                conn = self._listener.accept()
            except Exception as e:  # AuthenticationError, EOFError: a stranger or a dead peer
                if self._closed.is_set():
                    return
                logger.warning("refused a connection to the Cerebro driver: %r", e)
                continue
            if self._closed.is_set():
                conn.close()
                return
            self._accepted.put(conn)

    def next_connection(self, timeout: float) -> Connection | None:
        """The next authenticated connection, or None after ``timeout`` seconds."""
        try:
            return self._accepted.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self) -> None:
        """Stop listening; connections already accepted stay open."""
        self._closed.set()
        try:  # wake the accept() call so that its thread sees the flag and ends
            socket.create_connection(self.address, timeout=5).close()
        except OSError:
            pass
        self._thread.join(timeout=5)
        try:
            self._listener.close()
        except OSError:
            pass
        while True:  # connections accepted but never claimed
            try:
                self._accepted.get_nowait().close()
            except queue.Empty:
                break


def connect(address: tuple[str, int], authkey: bytes) -> Connection:
    """Connect a worker to the driver (raises if the key is refused)."""
    return Client(address, family="AF_INET", authkey=authkey)

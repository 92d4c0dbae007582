"""The driver-worker channel admits only peers holding the run's key."""

from __future__ import annotations

import pickle
import socket
import struct
from multiprocessing import AuthenticationError

import pytest

from cerebro.backend.spark.channel import DriverChannel, connect


class _Exploit:
    """Unpickling this creates a file: proof that a payload was unpickled."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture
def chan():
    c = DriverChannel("127.0.0.1")
    yield c
    c.close()


def test_listens_on_the_given_address_only(chan):
    host, port = chan.address
    assert host == "127.0.0.1" and port > 0


def test_right_key_connects_and_messages_flow(chan):
    client = connect(chan.address, chan.authkey)
    server = chan.next_connection(timeout=5)
    assert server is not None
    client.send(("hello", (0, 0, "h", 1)))
    assert server.recv() == ("hello", (0, 0, "h", 1))
    server.send(("stop", None))
    assert client.recv() == ("stop", None)
    client.close()
    server.close()


def test_wrong_key_is_refused(chan):
    with pytest.raises(AuthenticationError):
        connect(chan.address, b"not-the-key" * 3)
    assert chan.next_connection(timeout=0.5) is None


def test_unauthenticated_payload_is_never_unpickled(chan, tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps(("train", _Exploit(str(marker))))
    with socket.create_connection(chan.address, timeout=5) as s:
        # Skip the handshake and send a framed pickle, as a Connection would.
        s.sendall(struct.pack("!i", len(payload)) + payload)
        s.recv(1024)  # the server's challenge or its refusal
    assert chan.next_connection(timeout=0.5) is None
    assert not marker.exists()
    # The channel still serves honest workers afterwards.
    client = connect(chan.address, chan.authkey)
    assert chan.next_connection(timeout=5) is not None
    client.close()


def test_close_ends_the_accept_thread():
    import threading

    c = DriverChannel("127.0.0.1")
    c.close()
    assert not [t for t in threading.enumerate() if t.name == "cerebro-accept" and t.is_alive()]

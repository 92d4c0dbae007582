"""Storage fixtures: a WebHDFS-protocol server on loopback, backed by a temporary folder."""

from __future__ import annotations

import pytest
from webhdfs_server import WebHDFSServer


@pytest.fixture
def webhdfs_server(tmp_path):
    """A fresh :class:`WebHDFSServer` on ``127.0.0.1`` (a free port), stopped after the test."""
    with WebHDFSServer(str(tmp_path / "webhdfs-root")) as server:
        yield server

"""Fixtures of the cerebro.keras tests."""

from __future__ import annotations

import pytest
from keras_helpers import CopyingStore


@pytest.fixture
def copying_store(tmp_path):
    """A store whose local_write/local_read copy files, like a remote store's."""
    return CopyingStore(str(tmp_path / "remote"))

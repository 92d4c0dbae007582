"""Choose a store class from a URL's scheme (``Store.create``)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from cerebro.exceptions import CerebroValueError
from cerebro.storage._base import Store


def store_for_url(url: str, **kwargs: Any) -> Store:
    """Build the store for ``url``: ``file://`` or a plain path, ``hdfs://``, ``webhdfs://``."""
    from cerebro.storage.hdfs import HDFSStore
    from cerebro.storage.local import LocalStore

    if not isinstance(url, str) or not url:
        raise CerebroValueError(f"url must be a non-empty string, got {url!r}")
    scheme = urlsplit(url).scheme
    if scheme in ("", "file"):
        return LocalStore(url, **kwargs)
    if scheme == "hdfs":
        return HDFSStore(url, **kwargs)
    if scheme == "webhdfs":
        kwargs.setdefault("driver", "webhdfs")
        return HDFSStore(url, **kwargs)
    raise CerebroValueError(
        f"url scheme must be one of file://, hdfs://, webhdfs:// (or a plain path), got {url!r}"
    )

"""HDFSStore: a store on HDFS (placeholder until the HDFS work lands)."""

from __future__ import annotations

from cerebro.storage._base import Store


class HDFSStore(Store):
    """A store on HDFS; see the storage work item."""

    schemes = ("hdfs", "webhdfs")

    def _normalize(self, path: str, arg_name: str) -> str:
        raise NotImplementedError

    def _make_filesystem(self):
        raise NotImplementedError

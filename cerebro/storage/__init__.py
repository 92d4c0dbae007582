"""Stores: where Cerebro keeps prepared data, checkpoints and TensorBoard logs."""

from cerebro.storage._base import Store
from cerebro.storage.hdfs import HDFSStore
from cerebro.storage.local import LocalStore

__all__ = ["Store", "LocalStore", "HDFSStore"]

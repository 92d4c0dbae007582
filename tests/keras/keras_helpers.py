"""Helpers for the cerebro.keras tests: small Keras models, learnable data, a copying store."""

from __future__ import annotations

import os
from urllib.parse import unquote, urlsplit

import numpy as np
import pyarrow.fs as pafs

from cerebro.storage._base import Store


def mlp(
    num_features: int = 8,
    units: int = 16,
    input_name: str = "features",
    output_name: str = "label",
):
    """A small functional regression MLP."""
    import keras

    inputs = keras.Input(shape=(num_features,), name=input_name)
    hidden = keras.layers.Dense(units, activation="relu")(inputs)
    outputs = keras.layers.Dense(1, name=output_name)(hidden)
    return keras.Model(inputs, outputs)


def regression_data(rows: int, num_features: int = 8, seed: int = 0) -> dict[str, np.ndarray]:
    """A learnable task: a linear function plus a mild non-linearity and a little noise."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, num_features))
    w = np.linspace(-1.0, 1.0, num_features)
    y = x @ w + 0.5 * np.sin(x[:, 0]) + 0.1 * rng.normal(size=rows)
    return {"features": x, "label": y}


def slice_rows(data: dict[str, np.ndarray], start: int, stop: int) -> dict[str, np.ndarray]:
    return {k: v[start:stop] for k, v in data.items()}


class CopyingStore(Store):
    """A store on the local disk that takes the base class's copy-based paths for
    ``local_write``/``local_read`` (as a remote store such as HDFSStore does), so code that
    must also work on remote stores is exercised through upload and download."""

    schemes = ("copy",)

    def _normalize(self, path: str, arg_name: str) -> str:
        local = unquote(urlsplit(path).path) if path.startswith("copy:") else path
        return "copy://" + os.path.abspath(local).rstrip("/")

    def _make_filesystem(self) -> pafs.FileSystem:
        return pafs.LocalFileSystem()

    def to_fs_path(self, url: str) -> str:
        return unquote(urlsplit(url).path)


def all_variables(model) -> list[np.ndarray]:
    """Every weight and optimizer variable of a model, as numpy arrays."""
    return [np.asarray(v) for v in model.weights] + [
        np.asarray(v) for v in model.optimizer.variables
    ]

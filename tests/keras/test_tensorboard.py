"""TensorBoard logs: per-epoch scalars and HParams data that TensorBoard's readers open."""

from __future__ import annotations

import os

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import metadata as hparams_metadata

from cerebro.exceptions import CerebroTypeError, CerebroValueError
from cerebro.keras import TensorBoardLogger, close_loggers, write_epoch_scalars, write_hparams
from cerebro.storage._base import TMP_MARKER


def read_run(path: str) -> EventAccumulator:
    acc = EventAccumulator(path)
    acc.Reload()
    return acc


def session_hparams(acc: EventAccumulator) -> dict:
    content = acc.PluginTagToContent("hparams")[hparams_metadata.SESSION_START_INFO_TAG]
    info = hparams_metadata.parse_session_start_info_plugin_data(content)
    out = {}
    for name, value in info.hparams.items():
        kind = value.WhichOneof("kind")
        out[name] = getattr(value, kind)
    return out, info.group_name


def test_scalars_per_epoch_and_hparams_per_model(local_store):
    params = {
        "lr": np.float64(0.01),
        "units": np.int64(32),
        "optimizer": "adam",
        "bn": True,
        "shape": (3, 4),
        "extra": None,
    }
    with TensorBoardLogger(local_store) as tb:
        for mid in ("m1", "m2"):
            tb.write_hparams(mid, params, ["train_loss", "val_loss"])
        for epoch in range(3):
            for k, mid in enumerate(("m1", "m2")):
                tb.write_epoch_scalars(
                    mid, epoch, {"train_loss": 1.0 / (epoch + 1) + k, "val_loss": 2.0 - epoch}
                )
        # Written files are complete before close: readable while the logger is open.
        assert read_run(local_store.local_path(local_store.get_logs_path("m1"))).Tags()["scalars"]
    for k, mid in enumerate(("m1", "m2")):
        logdir = local_store.local_path(local_store.get_logs_path(mid))
        files = os.listdir(logdir)
        assert len(files) == 1 and files[0].startswith("events.out.tfevents.")  # one per model
        acc = read_run(logdir)
        assert sorted(acc.Tags()["scalars"]) == ["train_loss", "val_loss"]
        train = [(e.step, e.value) for e in acc.Scalars("train_loss")]
        assert [s for s, _ in train] == [0, 1, 2]
        np.testing.assert_allclose([v for _, v in train], [1.0 + k, 0.5 + k, 1 / 3 + k], rtol=1e-6)
        assert [e.value for e in acc.Scalars("val_loss")] == [2.0, 1.0, 0.0]
        hp, group = session_hparams(acc)
        assert group == mid
        assert hp == {
            "lr": 0.01,
            "units": 32.0,
            "optimizer": "adam",
            "bn": True,
            "shape": "(3, 4)",
            "extra": "None",
        }


def test_module_functions_keep_one_file_open_per_model(local_store):
    write_hparams(local_store, "m", {"lr": 0.1}, ["val_loss"])
    for epoch in range(4):
        write_epoch_scalars(local_store, "m", epoch, {"val_loss": float(epoch)})
    logdir = local_store.local_path(local_store.get_logs_path("m"))
    assert len(os.listdir(logdir)) == 1
    close_loggers(local_store, "m")
    write_epoch_scalars(local_store, "m", 4, {"val_loss": 4.0})  # a new file after closing
    close_loggers()
    names = os.listdir(logdir)
    assert len(names) == 2 and not [n for n in names if TMP_MARKER in n]
    acc = read_run(logdir)  # TensorBoard reads the folder's files as one run
    assert [e.step for e in acc.Scalars("val_loss")] == [0, 1, 2, 3, 4]
    assert session_hparams(acc)[0] == {"lr": 0.1}


def test_a_non_local_store_gets_uploaded_files(copying_store, tmp_path):
    with TensorBoardLogger(copying_store) as tb:
        tb.write_hparams("m", {"lr": 0.1})
        tb.write_epoch_scalars("m", 0, {"loss": 1.5})
        tb.write_epoch_scalars("m", 1, {"loss": 0.5})
    logdir = copying_store.to_fs_path(copying_store.get_logs_path("m"))
    acc = read_run(logdir)
    assert [(e.step, e.value) for e in acc.Scalars("loss")] == [(0, 1.5), (1, 0.5)]
    assert session_hparams(acc)[0] == {"lr": 0.1}


def test_bad_input(local_store):
    with TensorBoardLogger(local_store) as tb:
        with pytest.raises(CerebroValueError, match="epoch must be an int >= 0, got -1"):
            tb.write_epoch_scalars("m", -1, {"loss": 1.0})
        with pytest.raises(CerebroTypeError, match="metric 'loss' must be a number, got 'x'"):
            tb.write_epoch_scalars("m", 0, {"loss": "x"})
        with pytest.raises(CerebroValueError, match="non-empty dict"):
            tb.write_epoch_scalars("m", 0, {})
        with pytest.raises(CerebroValueError, match="model_id must be"):
            tb.write_epoch_scalars("../up", 0, {"loss": 1.0})
        with pytest.raises(CerebroTypeError, match="metric_names must be a list"):
            tb.write_hparams("m", {"lr": 1}, "val_loss")
    with pytest.raises(CerebroValueError, match="closed"):
        tb.write_epoch_scalars("m", 0, {"loss": 1.0})
    assert not local_store.exists(local_store.get_logs_path("m"))

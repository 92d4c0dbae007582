"""The store conformance suite: every Store implementation must pass the same tests.

In the style of optuna/testing/pytest_storages.py: one test class, parametrized over store
factories. ``local`` is a LocalStore under a temporary folder; ``webhdfs`` is an
HDFSStore(driver="webhdfs") talking HTTP to the WebHDFS-protocol test server (webhdfs_server.py)
on loopback. Each test also looks at the bytes where they really live (the local folder, or the
server's backing folder) so a store cannot pass by agreeing with itself.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from webhdfs_server import WebHDFSServer

from cerebro.exceptions import CerebroValueError, StoreError
from cerebro.storage import HDFSStore, LocalStore, Store
from cerebro.storage._base import TMP_MARKER

STORE_KINDS = ["local", "webhdfs"]


@dataclass
class StoreEnv:
    """How to make stores of one kind, and where their bytes really are."""

    kind: str
    url: Callable[[str], str]  # URL (or path) of a folder under this test's root
    backing: Callable[[str], str]  # the local OS path that holds a store URL's bytes
    store_cls: type[Store]
    kwargs: dict
    server: WebHDFSServer | None = None

    def make(self, sub: str = "store", **overrides) -> Store:
        return self.store_cls(self.url(sub), **self.kwargs, **overrides)


@pytest.fixture(params=STORE_KINDS)
def env(request, tmp_path) -> StoreEnv:
    if request.param == "local":
        root = tmp_path / "local"
        return StoreEnv(
            kind="local",
            url=lambda sub: str(root / sub),
            backing=lambda url: urlsplit(url).path if url.startswith("file:") else url,
            store_cls=LocalStore,
            kwargs={},
        )
    server = request.getfixturevalue("webhdfs_server")
    return StoreEnv(
        kind="webhdfs",
        url=lambda sub: f"webhdfs://{server.address}/user/root/{sub}",
        backing=lambda url: server.local_path(urlsplit(url).path),
        store_cls=HDFSStore,
        kwargs={"driver": "webhdfs"},
        server=server,
    )


def _raw_names(path: str) -> list[str]:
    """Every name in a backing folder, temporary files included."""
    return sorted(os.listdir(path)) if os.path.isdir(path) else []


def _child_roundtrip(store: Store) -> str:
    """Runs in a spawned process: read what the parent wrote, write an answer."""
    text = store.read_text(store.get_run_state_path("m1"))
    store.write_text(store.get_run_state_path("m2"), "from child")
    return text


BAD_MODEL_IDS = ["../x", "a/b", "", ".hidden", "x" * 200, "..", "a\\b", "-x", "a b", None, 7]


class TestStoreConformance:
    # ------------------------------------------------------------------ layout
    def test_default_layout(self, env: StoreEnv) -> None:
        store = env.make()
        prefix = store.prefix_path
        assert urlsplit(prefix).scheme == ("file" if env.kind == "local" else "webhdfs")
        assert prefix.endswith("/store")
        assert store.get_train_data_path() == prefix + "/train_data"
        assert store.get_val_data_path() == prefix + "/val_data"
        assert store.get_runs_path() == prefix + "/runs"
        assert store.get_run_path("m1") == prefix + "/runs/m1"
        assert store.get_checkpoint_path("m1") == prefix + "/runs/m1/checkpoint.keras"
        assert store.get_run_state_path("m1") == prefix + "/runs/m1/state.json"
        assert store.get_logs_path("m1") == prefix + "/logs/m1"
        assert store.get_data_metadata_path() == prefix + "/train_data/_cerebro_metadata.json"

    def test_trailing_slash_and_dots_are_normalized(self, env: StoreEnv) -> None:
        assert env.make("a/./b/../store/").prefix_path == env.make("a/store").prefix_path

    @pytest.mark.parametrize("name", ["train_path", "val_path", "runs_path", "logs_path"])
    def test_each_override(self, env: StoreEnv, name: str) -> None:
        default = env.make()
        store = env.make(**{name: env.url("elsewhere/" + name)})
        target = env.make("elsewhere/" + name).prefix_path  # the same URL, normalized
        got = {
            "train_path": store.get_train_data_path(),
            "val_path": store.get_val_data_path(),
            "runs_path": store.get_runs_path(),
            "logs_path": store.get_logs_path("m1").rsplit("/", 1)[0],
        }
        want = {
            "train_path": default.get_train_data_path(),
            "val_path": default.get_val_data_path(),
            "runs_path": default.get_runs_path(),
            "logs_path": default.get_logs_path("m1").rsplit("/", 1)[0],
        }
        want[name] = target
        assert got == want
        if name == "runs_path":
            assert store.get_checkpoint_path("m") == target + "/m/checkpoint.keras"

    def test_all_overrides_together_and_files_land_there(self, env: StoreEnv) -> None:
        names = ["train_path", "val_path", "runs_path", "logs_path"]
        store = env.make(**{n: env.url("o/" + n) for n in names})
        store.write_text(store.get_run_state_path("m1"), "s")
        store.write_text(store.get_logs_path("m1") + "/events", "e")
        assert os.path.isfile(
            os.path.join(env.backing(env.make("o/runs_path").prefix_path), "m1", "state.json")
        )
        assert os.path.isfile(
            os.path.join(env.backing(env.make("o/logs_path").prefix_path), "m1", "events")
        )
        assert not os.path.exists(env.backing(store.prefix_path))

    @pytest.mark.parametrize("bad", ["relative/path", "s3://bucket/x"])
    def test_bad_override_is_rejected(self, env: StoreEnv, bad: str) -> None:
        if env.kind == "local" and bad == "relative/path":
            return  # LocalStore resolves relative paths against the working directory
        with pytest.raises(CerebroValueError, match="train_path"):
            env.make(train_path=bad)

    # ------------------------------------------------------------------ model ids
    @pytest.mark.parametrize("model_id", BAD_MODEL_IDS)
    def test_bad_model_id_never_makes_a_path(self, env: StoreEnv, model_id) -> None:
        store = env.make()
        for method in (
            store.get_run_path,
            store.get_checkpoint_path,
            store.get_run_state_path,
            store.get_logs_path,
        ):
            with pytest.raises(CerebroValueError, match="model_id"):
                method(model_id)

    @pytest.mark.parametrize("model_id", ["m0", "Model_1.v2-a", "9", "x" * 128])
    def test_good_model_id_stays_inside_its_folder(self, env: StoreEnv, model_id: str) -> None:
        store = env.make()
        run = store.get_run_path(model_id)
        assert run == store.get_runs_path() + "/" + model_id
        assert store.to_fs_path(run).startswith(store.to_fs_path(store.get_runs_path()) + "/")

    # ------------------------------------------------------------------ file operations
    def test_makedirs_exists_is_dir_listdir(self, env: StoreEnv) -> None:
        store = env.make()
        deep = store.prefix_path + "/a/b/c"
        assert not store.exists(deep)
        store.makedirs(deep)
        store.makedirs(deep)  # idempotent
        assert store.exists(deep) and store.is_dir(deep)
        assert os.path.isdir(env.backing(deep))
        store.write_bytes(store.prefix_path + "/a/file.bin", b"x")
        assert store.exists(store.prefix_path + "/a/file.bin")
        assert not store.is_dir(store.prefix_path + "/a/file.bin")
        assert store.listdir(store.prefix_path + "/a") == ["b", "file.bin"]
        assert store.listdir(store.prefix_path + "/missing") == []

    def test_listdir_hides_temporary_files(self, env: StoreEnv) -> None:
        store = env.make()
        url = store.prefix_path + "/f.json"
        store.write_bytes(store.temp_sibling(url), b"half")
        store.write_bytes(url, b"{}")
        assert store.listdir(store.prefix_path) == ["f.json"]
        assert any(TMP_MARKER in n for n in _raw_names(env.backing(store.prefix_path)))

    def test_delete_file_folder_and_missing(self, env: StoreEnv) -> None:
        store = env.make()
        store.write_bytes(store.prefix_path + "/d/e/f.bin", b"1")
        store.write_bytes(store.prefix_path + "/g.bin", b"2")
        store.delete(store.prefix_path + "/g.bin")
        assert not os.path.exists(env.backing(store.prefix_path + "/g.bin"))
        store.delete(store.prefix_path + "/d")  # recursive
        assert not os.path.exists(env.backing(store.prefix_path + "/d"))
        store.delete(store.prefix_path + "/never-there")  # no error
        assert _raw_names(env.backing(store.prefix_path)) == []

    def test_rename(self, env: StoreEnv) -> None:
        store = env.make()
        a, b = store.prefix_path + "/a.bin", store.prefix_path + "/sub/b.bin"
        store.write_bytes(a, b"payload")
        store.makedirs(store.prefix_path + "/sub")
        store.rename(a, b)
        assert not store.exists(a)
        with open(env.backing(b), "rb") as f:
            assert f.read() == b"payload"
        store.write_bytes(a, b"other")
        with pytest.raises(StoreError, match="destination exists"):
            store.rename(a, b)
        assert store.read_bytes(b) == b"payload"
        store.rename(store.prefix_path + "/sub", store.prefix_path + "/moved")
        assert store.listdir(store.prefix_path + "/moved") == ["b.bin"]

    def test_read_missing_file_raises_file_not_found(self, env: StoreEnv) -> None:
        store = env.make()
        with pytest.raises(FileNotFoundError):
            store.read_bytes(store.prefix_path + "/nothing.bin")

    # ------------------------------------------------------------------ atomic writes
    def test_failed_write_leaves_no_file_and_no_temp(self, env: StoreEnv) -> None:
        store = env.make()
        url = store.get_checkpoint_path("m1")
        with pytest.raises(RuntimeError, match="midway"):
            with store.local_write(url) as local:
                with open(local, "wb") as f:
                    f.write(b"half a checkpoint")
                raise RuntimeError("midway")
        assert not store.exists(url)
        assert _raw_names(env.backing(store.get_run_path("m1"))) == []

    def test_failed_write_keeps_the_old_file_whole(self, env: StoreEnv) -> None:
        store = env.make()
        url = store.get_checkpoint_path("m1")
        store.write_bytes(url, b"old version")
        with pytest.raises(RuntimeError, match="midway"):
            with store.local_write(url) as local:
                with open(local, "wb") as f:
                    f.write(b"new")
                raise RuntimeError("midway")
        assert store.read_bytes(url) == b"old version"
        assert _raw_names(env.backing(store.get_run_path("m1"))) == ["checkpoint.keras"]

    def test_failed_upload_leaves_no_file_and_no_temp(self, env: StoreEnv, tmp_path) -> None:
        store = env.make()
        url = store.prefix_path + "/up/file.bin"
        with pytest.raises(OSError):
            store.upload_file(str(tmp_path / "does-not-exist"), url)
        assert not store.exists(url)
        assert _raw_names(env.backing(store.prefix_path + "/up")) == []

    def test_existing_file_is_replaced_whole(self, env: StoreEnv) -> None:
        store = env.make()
        url = store.get_run_state_path("m1")
        store.write_bytes(url, b"L" * 100_000)
        store.write_bytes(url, b"short")
        assert store.read_bytes(url) == b"short"
        assert os.path.getsize(env.backing(url)) == 5
        assert _raw_names(env.backing(store.get_run_path("m1"))) == ["state.json"]

    # ------------------------------------------------------------------ bytes, text, json
    def test_bytes_text_json_round_trip(self, env: StoreEnv) -> None:
        store = env.make()
        data = bytes(range(256)) * 300
        store.write_bytes(store.prefix_path + "/b.bin", data)
        assert store.read_bytes(store.prefix_path + "/b.bin") == data
        with open(env.backing(store.prefix_path + "/b.bin"), "rb") as f:
            assert f.read() == data
        text = "Größe — 模型 ✓\nline 2"
        store.write_text(store.prefix_path + "/t.txt", text)
        assert store.read_text(store.prefix_path + "/t.txt") == text
        obj = {"b": [1, 2.5, None, True], "a": {"nested": "ü"}}
        store.write_json(store.prefix_path + "/o.json", obj)
        assert store.read_json(store.prefix_path + "/o.json") == obj
        with open(env.backing(store.prefix_path + "/o.json"), encoding="utf-8") as f:
            raw = f.read()
        assert (
            json.loads(raw) == obj and raw.endswith("\n") and raw.index('"a"') < raw.index('"b"')
        )

    def test_empty_file(self, env: StoreEnv) -> None:
        store = env.make()
        store.write_bytes(store.prefix_path + "/empty", b"")
        assert store.read_bytes(store.prefix_path + "/empty") == b""
        assert os.path.getsize(env.backing(store.prefix_path + "/empty")) == 0

    @pytest.mark.parametrize("corrupt", [b'{"epoch": 3, "hist', b"\xff\xfe not utf-8", b""])
    def test_corrupt_json_raises_store_error(self, env: StoreEnv, corrupt: bytes) -> None:
        store = env.make()
        url = store.get_run_state_path("m1")
        store.write_json(url, {"epoch": 3})
        with open(env.backing(url), "wb") as f:  # damaged behind the store's back
            f.write(corrupt)
        with pytest.raises(StoreError, match="not valid JSON"):
            store.read_json(url)

    # ------------------------------------------------------------------ local bridges
    def test_local_write_and_local_read(self, env: StoreEnv) -> None:
        store = env.make()
        url = store.get_checkpoint_path("m1")
        with store.local_write(url) as local:
            assert os.path.isabs(local)
            with open(local, "wb") as f:
                f.write(b"weights")
        with open(env.backing(url), "rb") as f:
            assert f.read() == b"weights"
        with store.local_read(url) as local:
            with open(local, "rb") as f:
                assert f.read() == b"weights"

    def test_upload_download_and_upload_dir(self, env: StoreEnv, tmp_path) -> None:
        store = env.make()
        src = tmp_path / "src"
        (src / "sub" / "deeper").mkdir(parents=True)
        (src / "a.bin").write_bytes(b"A" * 3000)
        (src / "sub" / "b.txt").write_text("bee")
        (src / "sub" / "deeper" / "c").write_bytes(b"")
        store.upload_file(str(src / "a.bin"), store.prefix_path + "/one/a.bin")
        store.download_file(store.prefix_path + "/one/a.bin", str(tmp_path / "a.copy"))
        assert (tmp_path / "a.copy").read_bytes() == b"A" * 3000
        logs = store.get_logs_path("m1")
        store.upload_dir(str(src), logs)
        assert store.listdir(logs) == ["a.bin", "sub"]
        assert store.listdir(logs + "/sub") == ["b.txt", "deeper"]
        assert store.read_text(logs + "/sub/b.txt") == "bee"
        assert store.read_bytes(logs + "/sub/deeper/c") == b""
        with open(env.backing(logs + "/a.bin"), "rb") as f:
            assert f.read() == b"A" * 3000

    # ------------------------------------------------------------------ check_writable
    def test_check_writable_creates_prefix_and_leaves_nothing(self, env: StoreEnv) -> None:
        store = env.make("new/deep/store")
        store.check_writable()
        assert os.path.isdir(env.backing(store.prefix_path))
        assert _raw_names(env.backing(store.prefix_path)) == []

    def test_check_writable_prefix_is_a_file(self, env: StoreEnv) -> None:
        parent = env.make()
        parent.write_bytes(parent.prefix_path + "/plain-file", b"x")
        store = env.make("store/plain-file")
        assert os.path.isfile(env.backing(store.prefix_path))
        with pytest.raises(StoreError, match="is a file"):
            store.check_writable()

    def test_check_writable_prefix_under_a_file(self, env: StoreEnv) -> None:
        parent = env.make()
        parent.write_bytes(parent.prefix_path + "/plain-file", b"x")
        store = env.make("store/plain-file/below")
        with pytest.raises(StoreError, match="cannot be written"):
            store.check_writable()
        assert os.path.isfile(env.backing(parent.prefix_path + "/plain-file"))

    # ------------------------------------------------------------------ pickling
    def test_pickled_store_works_in_another_process(self, env: StoreEnv) -> None:
        store = env.make()
        store.write_text(store.get_run_state_path("m1"), "from parent")
        assert store._fs is not None  # opened: the clone must not carry it
        clone = pickle.loads(pickle.dumps(store))
        assert clone == store and clone._fs is None and type(clone) is type(store)
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            answer = pool.apply(_child_roundtrip, (store,))
        assert answer == "from parent"
        with open(env.backing(store.get_run_state_path("m2")), encoding="utf-8") as f:
            assert f.read() == "from child"

    # ------------------------------------------------------------------ Store.create
    def test_store_create_from_url(self, env: StoreEnv) -> None:
        store = env.make()
        store.write_text(store.prefix_path + "/hello.txt", "hi")
        created = Store.create(store.prefix_path)
        assert type(created) is type(store) and created == store
        assert created.read_text(created.prefix_path + "/hello.txt") == "hi"

    # ------------------------------------------------------------------ Parquet
    def test_parquet_through_store_filesystem(self, env: StoreEnv) -> None:
        store = env.make()
        n = 5000
        table = pa.table(
            {
                "id": pa.array(range(n), pa.int64()),
                "x": pa.array([i * 0.5 for i in range(n)], pa.float64()),
                "v": pa.array([[float(i), float(-i)] for i in range(n)], pa.list_(pa.float32())),
            }
        )
        folder = store.get_train_data_path()
        store.makedirs(folder)
        fs, path = store.filesystem, store.to_fs_path(folder)
        pq.write_table(
            table.slice(0, 3000), path + "/part-0.parquet", filesystem=fs, row_group_size=500
        )
        pq.write_table(
            table.slice(3000), path + "/part-1.parquet", filesystem=fs, row_group_size=500
        )
        assert pq.read_table(path, filesystem=fs).sort_by("id").equals(table)
        with fs.open_input_file(path + "/part-0.parquet") as f:
            parquet_file = pq.ParquetFile(f)
            assert parquet_file.metadata.num_row_groups == 6
            assert parquet_file.read_row_group(4).equals(table.slice(2000, 500))
        # Real Parquet where the bytes live, readable without the store:
        assert pq.read_table(env.backing(folder + "/part-1.parquet")).equals(table.slice(3000))

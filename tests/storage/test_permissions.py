"""Nothing a LocalStore writes is world-writable, even when the process umask is 0.

Other users on the machine (or the NFS mount) must not be able to replace a checkpoint that
workers then load, or the prepared data a search trains on. The first tests run every write
method of the store API in this process with ``os.umask(0)``; the last runs a whole search
(data preparation, checkpoints, states, TensorBoard logs, the experiment record) in a process
started with umask 0, so that Spark's JVM and its Python workers have it too.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cerebro.storage import LocalStore

E2E_SCRIPT = Path(__file__).resolve().parents[1] / "backend" / "e2e_script.py"


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def modes(root: Path) -> dict[str, int]:
    """Permission bits of ``root`` and everything under it, by path relative to ``root``."""
    out = {".": stat.S_IMODE(root.stat().st_mode)}
    for path in root.rglob("*"):
        out[str(path.relative_to(root))] = stat.S_IMODE(path.lstat().st_mode)
    return out


def world_writable(found: dict[str, int]) -> dict[str, str]:
    return {p: oct(m) for p, m in found.items() if m & stat.S_IWOTH}


def test_every_store_write_method_leaves_nothing_world_writable(tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.bin").write_bytes(b"a")
    (src / "sub" / "b.txt").write_text("b")
    root = tmp_path / "new" / "deeper"  # the store creates these parents too
    with umask(0):
        store = LocalStore(str(root / "store"))
        store.check_writable()
        store.write_json(store.get_data_metadata_path(), {"format": "x"})
        store.write_bytes(store.get_val_data_path() + "/part-0.parquet", b"rows")
        store.write_text(store.get_run_state_path("m1"), "{}")
        store.write_json(store.get_experiment_path("exp"), {"models": {}})
        with store.local_write(store.get_checkpoint_path("m1")) as local:
            Path(local).write_bytes(b"PK")
        store.upload_file(str(src / "a.bin"), store.get_logs_path("m1") + "/events.1")
        store.upload_dir(str(src), store.get_logs_path("m2"))
        store.makedirs(store.get_run_path("m3"))
    found = modes(tmp_path / "new")
    files = {p for p in found if (tmp_path / "new" / p).is_file()}
    assert files == {  # the check below looks at every file written (and their folders)
        "deeper/store/train_data/_cerebro_metadata.json",
        "deeper/store/val_data/part-0.parquet",
        "deeper/store/runs/m1/state.json",
        "deeper/store/runs/m1/checkpoint.keras",
        "deeper/store/runs/_experiments/exp.json",
        "deeper/store/logs/m1/events.1",
        "deeper/store/logs/m2/a.bin",
        "deeper/store/logs/m2/sub/b.txt",
    }
    assert "deeper/store/runs/m3" in found
    assert world_writable(found) == {}
    # Only the others-write bit goes: the umask still decides the rest (here: group-writable).
    assert found["deeper/store/runs/m1/checkpoint.keras"] == 0o664
    assert found["deeper/store/runs/m1"] == 0o775


def test_folders_the_store_did_not_create_keep_their_mode(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # the user's choice, e.g. a drop folder: not Cerebro's to change
    with umask(0):
        store = LocalStore(str(shared / "store"))
        store.write_text(store.get_run_state_path("m1"), "{}")
    assert stat.S_IMODE(shared.stat().st_mode) == 0o777
    assert world_writable(modes(shared / "store")) == {}


@pytest.mark.slow
def test_a_whole_search_run_with_umask_0_writes_nothing_world_writable(tmp_path):
    store_dir = tmp_path / "s"
    cmd = [sys.executable, str(E2E_SCRIPT), "--store", str(store_dir)]
    cmd += ["--rows", "200", "--epochs", "1", "--experiment", "perm"]
    env = dict(os.environ, SPARK_LOCAL_IP="127.0.0.1", PYSPARK_PYTHON=sys.executable)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, umask=0, timeout=400)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-2000:] + proc.stderr[-4000:]
    models = sorted(json.loads(lines[-1][len("RESULT ") :])["history"])
    assert len(models) == 4

    found = modes(store_dir)
    written = {p.split("/")[0] for p in found if p != "."}
    assert written == {"train_data", "val_data", "runs", "logs"}
    for model_id in models:
        assert f"runs/{model_id}/checkpoint.keras" in found
        assert f"runs/{model_id}/state.json" in found
        assert any(p.startswith(f"logs/{model_id}/events.out.tfevents") for p in found)
    assert "runs/_experiments/perm.json" in found
    assert "train_data/_cerebro_metadata.json" in found
    assert world_writable(found) == {}

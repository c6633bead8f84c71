"""The low-level helpers: one cache-folder rule, all-or-nothing writes, one way to hash."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from evalkit.files import atomic_write_bytes, atomic_write_text, atomic_writer, build_dir_once, cache_dir
from evalkit.hashing import FileHashCache, sha256_bytes, sha256_file, sha256_path, sha256_text
from evalkit.judge.settings import cache_path_from
from evalkit.models.osprey.checkpoint import file_hashes


# ---------------------------------------------------------------------- cache_dir
def test_cache_dir_rule() -> None:
    home = Path.home()
    assert cache_dir({}) == home / ".cache" / "evalkit"
    assert cache_dir({"EVALKIT_CACHE": ""}) == home / ".cache" / "evalkit"  # empty = unset
    assert cache_dir({"EVALKIT_CACHE": "/x/y"}) == Path("/x/y")
    assert cache_dir({"EVALKIT_CACHE": "~/c"}) == home / "c"
    assert cache_dir() == Path(os.environ["EVALKIT_CACHE"])  # conftest points it at a temp folder
    assert cache_path_from(None, "judge.sqlite", {"EVALKIT_CACHE": "/x"}) == Path("/x/judge.sqlite")
    assert cache_path_from("off", "judge.sqlite", {}) is None


# ---------------------------------------------------------------------- atomic writes
def test_atomic_write_leaves_only_the_file(tmp_path: Path) -> None:
    out = tmp_path / "sub" / "results.json"
    assert atomic_write_text(out, "é\n") == out
    assert out.read_bytes() == "é\n".encode()
    atomic_write_bytes(tmp_path / "b.bin", b"\x00\x01")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    with atomic_writer(tmp_path / "rows.jsonl") as fh:
        fh.write("{}\n")
        assert not (tmp_path / "rows.jsonl").exists()  # nothing visible until the block ends
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["b.bin", "results.json", "rows.jsonl", "sub"]


def test_atomic_write_failing_midway_keeps_the_old_file(tmp_path: Path) -> None:
    out = tmp_path / "rows.jsonl"
    out.write_text("old\n")
    with pytest.raises(RuntimeError), atomic_writer(out) as fh:
        fh.write("half")
        raise RuntimeError("killed")
    assert out.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["rows.jsonl"]


def test_build_dir_once_builds_whole_folders_once(tmp_path: Path) -> None:
    calls: list[Path] = []

    def build(folder: Path) -> None:
        calls.append(folder)
        (folder / "a.txt").write_text("a")

    target = tmp_path / "gen" / "v1"
    assert build_dir_once(target, build, "v1\n") == target
    assert build_dir_once(target, build, "v1\n") == target
    assert len(calls) == 1 and calls[0] != target and not calls[0].exists()
    assert (target / "a.txt").read_text() == "a" and (target / "DONE").read_text() == "v1\n"

    def broken(folder: Path) -> None:
        (folder / "half").write_text("")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        build_dir_once(tmp_path / "gen" / "v2", broken, "v2\n")
    assert sorted(p.name for p in (tmp_path / "gen").iterdir()) == ["v1"]  # nothing half-built


# ---------------------------------------------------------------------- hashing
def test_hash_values_are_those_evalkit_always_wrote(tmp_path: Path) -> None:
    assert sha256_text("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert sha256_text("é") == hashlib.sha256("é".encode()).hexdigest()
    assert sha256_bytes(b"abc") == sha256_text("abc")
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(3 * (1 << 20) + 5))  # spans several read chunks
    assert sha256_file(big) == hashlib.sha256(big.read_bytes()).hexdigest() == sha256_path(big)
    folder = tmp_path / "images"
    (folder / "a").mkdir(parents=True)
    (folder / "a" / "x.png").write_bytes(b"12")
    (folder / "b.png").write_bytes(b"3")
    listing = hashlib.sha256(b"a/x.png\x002\nb.png\x001\n").hexdigest()
    assert sha256_path(folder) == "listing:" + listing


def test_sha256_path_sees_a_rewritten_file(tmp_path: Path) -> None:
    path = tmp_path / "ann.json"
    path.write_text("[1]")
    first = sha256_path(path)
    path.write_text("[2, 3]")
    assert sha256_path(path) != first == sha256_text("[1]")


def test_file_hash_cache_reads_and_writes_the_checkpoint_format(tmp_path: Path) -> None:
    shard = tmp_path / "model.safetensors"
    shard.write_bytes(b"weights")
    store = tmp_path / "cache" / "hashes.json"
    cache = FileHashCache(store)
    assert cache.hash_files([shard]) == {shard: sha256_bytes(b"weights")}
    stat = shard.stat()
    assert json.loads(store.read_text()) == {
        str(shard.resolve()): {
            "size": stat.st_size,
            "mtime": stat.st_mtime,
            "sha256": sha256_bytes(b"weights"),
        }
    }
    # A stored entry whose size and mtime still match is trusted, not re-hashed.
    store.write_text(
        json.dumps({str(shard.resolve()): {"size": stat.st_size, "mtime": stat.st_mtime, "sha256": "s"}})
    )
    assert FileHashCache(store).sha256(shard) == "s"
    os.utime(shard, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert FileHashCache(store).sha256(shard) == sha256_bytes(b"weights")
    assert [p.name for p in store.parent.iterdir()] == ["hashes.json"]


def test_checkpoint_file_hashes_use_the_cache_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVALKIT_CACHE", str(tmp_path / "cache"))
    shard = tmp_path / "model.safetensors"
    shard.write_bytes(b"w")
    assert file_hashes([shard]) == {"model.safetensors": sha256_bytes(b"w")}
    assert str(shard.resolve()) in json.loads((tmp_path / "cache" / "checkpoint_hashes.json").read_text())


def test_unwritable_hash_cache_only_warns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    shard = tmp_path / "s.bin"
    shard.write_bytes(b"x")
    assert FileHashCache(blocker / "hashes.json").hash_files([shard]) == {shard: sha256_bytes(b"x")}
    assert "cannot write" in capsys.readouterr().err

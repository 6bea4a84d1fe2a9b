"""LocalStore and key validation: pure, no servers."""

from __future__ import annotations

import dataclasses
import hashlib
import os

import pytest
from tests.support.views import storage_view

from reel_recorder.session import LocalStorage
from reel_recorder.storage import (
    InvalidKeyError,
    LocalStore,
    StoreError,
    content_type_for,
    key_problem,
    open_store,
    static_prefix,
)

HOSTILE_KEYS = [
    "",
    "/etc/passwd",
    "../outside.ts",
    "rec/../../outside.ts",
    "rec/./x.ts",
    "rec//x.ts",
    "rec\\..\\x.ts",
    "rec/x\x00.ts",
    "rec/x\n.ts",
    "rec/x\x7f.ts",
    "rec/\u202egnp.ts",         # right-to-left override
    "rec/a\u200db.ts",          # zero-width joiner
    "rec/\uff0e\uff0e/x.ts",    # full-width dots
    "rec/\u2025/x.ts",          # two-dot leader
    "rec/\uff0fetc/x.ts",       # full-width solidus
    "rec/" + "a" * 1100,
    "rec/dir/",
]


@pytest.mark.parametrize("key", HOSTILE_KEYS)
def test_hostile_keys_are_refused(key):
    assert key_problem(key) is not None


@pytest.mark.parametrize("key", ["rec/alice/seg00001.ts", "2026-11-25/1234_101500_01J/Zoë Ünïcode/index.m3u8",
                                 "a/データ/manifest.json", "x.ts", "rec/.hidden", "rec/...x"])
def test_ordinary_keys_are_accepted(key):
    assert key_problem(key) is None


def test_static_prefix():
    assert static_prefix("{date}/{room}_{time}_{recordingId}/") == ""
    assert static_prefix("tenant-a/{date}/{room}/") == "tenant-a/"
    assert static_prefix("tenant-a/recs/") == "tenant-a/recs/"
    assert static_prefix("rec-{date}/") == ""
    assert static_prefix("//a//b/{x}") == "a/b/"
    assert static_prefix(None) == ""


def test_content_types():
    assert content_type_for("a/b.ts") == "video/mp2t"
    assert content_type_for("a/index.m3u8") == "application/vnd.apple.mpegurl"
    assert content_type_for("manifest.json") == "application/json"
    assert content_type_for("x.bin") == "application/octet-stream"


def test_put_get_roundtrip(tmp_path):
    store = LocalStore(tmp_path / "root", name="primary")
    (tmp_path / "root").mkdir()
    store.check()
    src = tmp_path / "seg.ts"
    src.write_bytes(b"x" * 1000)
    sha = hashlib.sha256(b"x" * 1000).hexdigest()
    store.put_file("rec/alice/seg0.ts", src, sha256=sha)
    store.put_bytes("rec/alice/index.m3u8", b"#EXTM3U\n")
    assert store.get_bytes("rec/alice/seg0.ts") == b"x" * 1000
    assert store.exists("rec/alice/index.m3u8")
    assert not store.exists("rec/alice/nope.ts")
    assert not store.exists("rec/nodir/nope.ts")
    # no temporary files left behind
    assert sorted(os.listdir(tmp_path / "root" / "rec" / "alice")) == ["index.m3u8", "seg0.ts"]
    assert store.describe() == f"file://{tmp_path / 'root'}"
    assert store.free_bytes() > 0


def test_put_file_checks_sha256(tmp_path):
    (tmp_path / "root").mkdir()
    store = LocalStore(tmp_path / "root")
    src = tmp_path / "seg.ts"
    src.write_bytes(b"changed after close")
    with pytest.raises(StoreError) as ei:
        store.put_file("rec/seg.ts", src, sha256=hashlib.sha256(b"original").hexdigest())
    assert ei.value.kind == "object" and ei.value.code == "BadDigest"
    assert not store.exists("rec/seg.ts")


def test_missing_source_is_an_object_error(tmp_path):
    (tmp_path / "root").mkdir()
    store = LocalStore(tmp_path / "root")
    with pytest.raises(StoreError) as ei:
        store.put_file("rec/seg.ts", tmp_path / "gone.ts")
    assert ei.value.kind == "object"


@pytest.mark.parametrize("key", HOSTILE_KEYS)
def test_local_store_refuses_hostile_keys(tmp_path, key):
    root = tmp_path / "root"
    root.mkdir()
    store = LocalStore(root)
    with pytest.raises(InvalidKeyError) as ei:
        store.put_bytes(key, b"evil")
    assert "primary store file://" in str(ei.value)
    assert list(tmp_path.rglob("*")) == [root]  # nothing written anywhere


def test_symlinked_folder_cannot_redirect_writes(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "rec").symlink_to(outside)
    store = LocalStore(root)
    with pytest.raises(StoreError) as ei:
        store.put_bytes("rec/x.ts", b"evil")
    assert ei.value.kind == "object"
    with pytest.raises(StoreError):
        store.get_bytes("rec/x.ts")
    assert list(outside.iterdir()) == []


def test_symlinked_leaf_is_replaced_not_followed(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside.txt"
    (root / "rec").mkdir(parents=True)
    outside.write_text("precious")
    (root / "rec" / "x.ts").symlink_to(outside)
    store = LocalStore(root)
    store.put_bytes("rec/x.ts", b"new")
    assert outside.read_text() == "precious"
    assert not (root / "rec" / "x.ts").is_symlink()
    assert (root / "rec" / "x.ts").read_bytes() == b"new"
    # reading through a symlink is refused as well
    (root / "rec" / "y.ts").symlink_to(outside)
    with pytest.raises(StoreError):
        store.get_bytes("rec/y.ts")


def test_root_itself_may_be_a_symlink(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    store = LocalStore(tmp_path / "link")
    store.put_bytes("a/b.ts", b"ok")
    assert (real / "a" / "b.ts").read_bytes() == b"ok"


def test_key_prefix_is_enforced(tmp_path):
    store = LocalStore(tmp_path, key_prefix="tenant-a/")
    store.put_bytes("tenant-a/x.ts", b"ok")
    with pytest.raises(InvalidKeyError):
        store.put_bytes("tenant-b/x.ts", b"evil")
    with pytest.raises(InvalidKeyError):
        store.put_bytes("tenant-a/../tenant-b/x.ts", b"evil")


def test_check_missing_directory(tmp_path):
    store = LocalStore(tmp_path / "nope", name="backup")
    with pytest.raises(StoreError) as ei:
        store.check()
    assert ei.value.fatal
    assert str(ei.value).startswith(f"backup store file://{tmp_path / 'nope'}: directory does not exist")


def test_check_not_a_directory(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError) as ei:
        LocalStore(tmp_path / "file").check()
    assert ei.value.fatal


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_check_unwritable_directory(tmp_path):
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o555)
    try:
        with pytest.raises(StoreError) as ei:
            LocalStore(d).check()
        assert ei.value.fatal and "permission denied" in str(ei.value)
    finally:
        d.chmod(0o755)


def test_open_store_local(tmp_path):
    store = open_store(storage_view(local={"path": str(tmp_path)}, prefix="recs/{date}/"), "backup", None)
    assert isinstance(store, LocalStore)
    assert store.name == "backup" and store.key_prefix == "recs/"
    assert open_store(None, "backup", None) is None  # no backupStorage
    assert open_store(dataclasses.replace(storage_view(bucket="bkt"), bucket=None), "backup", None) is None  # neither


def test_open_store_refuses_bucket_and_local(tmp_path):
    # the API refuses this (CEL and pydantic); the store factory checks again
    spec = dataclasses.replace(storage_view(bucket="bkt"), local=LocalStorage(str(tmp_path)))
    with pytest.raises(StoreError) as ei:
        open_store(spec, "primary", None)
    assert ei.value.fatal and "primary store" in str(ei.value)


def test_open_store_reads_the_session_view_of_the_reel_api_model(tmp_path):
    store = open_store(storage_view(local={"path": str(tmp_path)}, prefix="team/{date}/{room}/"), "primary", None)
    assert isinstance(store, LocalStore) and store.key_prefix == "team/" and store.root == tmp_path
    spec = storage_view(bucket="recordings", endpoint="http://127.0.0.1:9", credentialsSecretRef={"name": "s3"},
                        serverSideEncryption="AES256")
    s3 = open_store(spec, "backup", {"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"})
    assert s3.label == "backup store s3://recordings @ http://127.0.0.1:9"
    assert (s3.sse, s3.credentials_secret, s3.region, s3.key_prefix) == ("AES256", "s3", "us-east-1", "")
    assert type(s3.sse) is str

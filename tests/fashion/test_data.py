import functools
import gzip
import hashlib
import http.server
import json
import struct
import threading
from pathlib import Path

import pytest
import torch

from hypotune.errors import DataError
from hypotune.fashion import data
from hypotune.fashion.config import DataConfig
from hypotune.fashion.data import (
    IMAGE_MAGIC,
    LABEL_MAGIC,
    PARTS,
    BatchStream,
    augment,
    fetch,
    locate,
    make_dataset,
    read_idx,
    read_raw,
    stratified_pick,
)
from tests.helpers import make_synthetic_dir, synthetic_split, write_idx


@pytest.fixture(autouse=True)
def fresh_cache():
    read_raw.cache_clear()
    yield
    read_raw.cache_clear()


def test_reads_gzip_and_raw_files(tmp_path):
    for compress in (True, False):
        folder = make_synthetic_dir(tmp_path / str(compress), 100, 50, compress=compress)
        raw = read_raw(str(folder))
        assert raw.train.images.shape == (100, 28, 28) and raw.train.images.dtype == torch.uint8
        assert raw.test.labels.tolist()[:3] == [0, 1, 2]


def corrupt(folder: Path, part: str, transform) -> Path:
    path = folder / f"{PARTS[part]}.gz"
    path.write_bytes(gzip.compress(transform(gzip.decompress(path.read_bytes()))))
    return path


@pytest.mark.parametrize(
    "part, transform, message",
    [
        ("train_images", lambda b: b[:-100], r"train-images-idx3-ubyte.gz: truncated \("),
        ("train_images", lambda b: b + b"xx", "has trailing bytes"),
        ("train_images", lambda b: struct.pack(">I", 0x0801) + b[4:], "bad magic number 0x00000801"),
        ("test_labels", lambda b: b[:6], "truncated header"),
        ("train_images", lambda b: b[:8] + struct.pack(">II", 32, 32) + b[16:], "images are 32x32"),
        ("train_labels", lambda b: b[:-1] + bytes([12]), "label 12 outside 0..9"),
        ("train_labels", lambda b: b[:4] + struct.pack(">I", 99) + b[8 : 99 + 8], "100 images but"),
    ],
)
def test_corrupt_files_name_the_file_and_problem(tmp_path, part, transform, message):
    folder = make_synthetic_dir(tmp_path, 100, 50)
    corrupt(folder, part, transform)
    with pytest.raises(DataError, match=message):
        read_raw(str(folder))


def test_a_corrupt_file_error_also_lists_the_search_path(tmp_path):
    folder = make_synthetic_dir(tmp_path, 100, 50)
    corrupt(folder, "train_images", lambda b: b[:-100])
    with pytest.raises(DataError, match=rf"truncated .*\(searched: {tmp_path}\)$"):
        read_raw(str(folder))


def test_a_file_that_is_not_gzip_is_reported(tmp_path):
    folder = make_synthetic_dir(tmp_path, 100, 50)
    (folder / f"{PARTS['train_images']}.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.gz: cannot read"):
        read_raw(str(folder))


def test_missing_files_list_the_searched_paths(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "SYSTEM_DIR", tmp_path / "system")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("HYPOTUNE_DATA", str(tmp_path / "env"))
    with pytest.raises(DataError, match="not found; searched: .*env, .*system, .*cache"):
        locate(download=False)
    with pytest.raises(DataError, match=f"searched: {tmp_path / 'given'}$"):
        locate(tmp_path / "given")


def test_search_order_prefers_the_environment_variable(tmp_path, monkeypatch):
    env_dir = make_synthetic_dir(tmp_path / "env", 20, 10)
    make_synthetic_dir(tmp_path / "cache" / "hypotune" / "fashion-mnist", 20, 10)
    monkeypatch.setattr(data, "SYSTEM_DIR", tmp_path / "system")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("HYPOTUNE_DATA", str(env_dir))
    assert locate(download=False)["train_images"].parent == env_dir


@pytest.fixture
def http_server(tmp_path):
    """A server on 127.0.0.1 serving generated IDX .gz files, and their checksums."""
    served = make_synthetic_dir(tmp_path / "served", 60, 20)
    checksums = {
        name: hashlib.sha256(gzip.decompress((served / f"{name}.gz").read_bytes())).hexdigest()
        for name in PARTS.values()
    }
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", checksums, served
    server.shutdown()


def test_download_verifies_checksums_and_falls_back_to_a_mirror(tmp_path, http_server):
    url, checksums, _ = http_server
    dead = "http://127.0.0.1:9/"  # nothing listens on the discard port
    fetch(tmp_path / "cache", (dead, url), checksums, timeout=5)
    assert read_raw(str(tmp_path / "cache")).train.images.shape == (60, 28, 28)


def test_download_rejects_a_checksum_mismatch_and_keeps_nothing(tmp_path, http_server):
    url, checksums, _ = http_server
    wrong = dict(checksums, **{PARTS["train_labels"]: "0" * 64})
    with pytest.raises(DataError, match="could not download train-labels-idx1-ubyte.gz: .*checksum mismatch"):
        fetch(tmp_path / "cache", (url,), wrong, timeout=5)
    assert not list((tmp_path / "cache").glob("train-labels*"))
    assert not list((tmp_path / "cache").glob("*.part"))


def test_parts_left_by_a_killed_download_are_removed_by_the_next(tmp_path, http_server):
    url, checksums, _ = http_server
    cache = tmp_path / "cache"
    cache.mkdir()
    leftover = cache / "tmpabc123.part"  # what kill -9 in the middle of a download leaves
    leftover.write_bytes(b"\x1f\x8b half a file")
    fetch(cache, (url,), checksums, timeout=5)
    assert not leftover.exists() and not list(cache.glob("*.part"))
    assert read_raw(str(cache)).train.images.shape == (60, 28, 28)


def test_locate_downloads_into_the_cache_when_nothing_is_found(tmp_path, monkeypatch, http_server):
    url, checksums, _ = http_server
    monkeypatch.setattr(data, "SYSTEM_DIR", tmp_path / "system")
    monkeypatch.setattr(data, "OFFICIAL_URLS", (url,))
    monkeypatch.setattr(data, "SHA256", checksums)
    monkeypatch.setattr(data.fetch, "__defaults__", ((url,), checksums, 5.0))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("HYPOTUNE_DATA", raising=False)
    paths = locate()
    assert (
        paths["test_labels"]
        == tmp_path / "cache" / "hypotune" / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz"
    )


def test_read_idx_checks_the_magic_number(tmp_path):
    images, labels = synthetic_split(10, 0)
    path = write_idx(tmp_path / "labels", labels)
    with pytest.raises(DataError, match="bad magic"):
        read_idx(path, IMAGE_MAGIC)
    assert read_idx(path, LABEL_MAGIC).tolist() == labels.tolist()


def test_stratified_pick_keeps_class_proportions_and_is_seeded():
    labels = torch.arange(1000) % 10
    picked = stratified_pick(labels, 105, seed=3)
    assert len(picked) == 105 and len(set(picked.tolist())) == 105
    counts = labels[picked].bincount()
    assert counts.max() - counts.min() <= 1
    assert torch.equal(picked, stratified_pick(labels, 105, seed=3))
    assert not torch.equal(picked, stratified_pick(labels, 105, seed=4))


def test_splits_are_disjoint_and_test_is_untouched(synthetic_dir):
    dataset = make_dataset(DataConfig(val_size=200, train_subset=500), str(synthetic_dir))
    assert (len(dataset.train), len(dataset.val), len(dataset.test)) == (500, 200, 300)
    assert dataset.val.labels.bincount().tolist() == [20] * 10
    train_rows = {bytes(img.numpy()) for img in dataset.train.images}
    assert not train_rows & {bytes(img.numpy()) for img in dataset.val.images}


def test_test_subset_is_stratified(synthetic_dir):
    dataset = make_dataset(DataConfig(val_size=200, test_size=100), str(synthetic_dir))
    assert dataset.test.labels.bincount().tolist() == [10] * 10


def test_course_protocol_validates_on_the_test_set(synthetic_dir):
    dataset = make_dataset(DataConfig(validate_on_test=True), str(synthetic_dir))
    assert len(dataset.train) == 1200 and dataset.val is dataset.test


def test_impossible_split_sizes_are_errors(synthetic_dir):
    with pytest.raises(DataError, match="data.val_size 5000 leaves no training images"):
        make_dataset(DataConfig(val_size=5000), str(synthetic_dir))
    with pytest.raises(DataError, match="data.train_subset 2000 exceeds"):
        make_dataset(DataConfig(val_size=200, train_subset=2000), str(synthetic_dir))


def test_batch_stream_is_seeded_and_covers_a_pass(synthetic_data):
    config = DataConfig()
    first = [labels for _, labels in BatchStream(synthetic_data.train, 100, config, 0).batches(10)]
    again = [labels for _, labels in BatchStream(synthetic_data.train, 100, config, 0).batches(10)]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert torch.cat(first).bincount().tolist() == synthetic_data.train.labels.bincount().tolist()
    images, _ = next(BatchStream(synthetic_data.train, 8, DataConfig(normalize="standardize"), 0).batches(1))
    assert images.shape == (8, 1, 28, 28) and images.dtype == torch.float32 and images.min() < 0


def test_augment_flips_and_shifts_each_image_independently():
    batch = torch.zeros(64, 1, 28, 28)
    batch[:, :, 10, 0] = 1.0  # a dot at the left edge
    generator = torch.Generator().manual_seed(0)
    flipped = augment(batch, flip=True, translate=0, generator=generator)
    on_right = flipped[:, 0, 10, 27] == 1
    assert 10 < int(on_right.sum()) < 54
    shifted = augment(batch, flip=False, translate=2, generator=generator)
    assert shifted.shape == batch.shape
    positions = {tuple(torch.nonzero(img[0])[0].tolist()) for img in shifted if img.sum() > 0}
    assert len(positions) > 3


def test_a_same_size_corruption_of_an_official_size_file_is_caught_once_verified(tmp_path, monkeypatch):
    folder = make_synthetic_dir(tmp_path / "data", 40, 20)
    names = {p.name.removesuffix(".gz"): p for p in folder.iterdir()}
    contents = {name: gzip.decompress(path.read_bytes()) for name, path in names.items()}
    monkeypatch.setattr(data, "SHA256", {n: hashlib.sha256(c).hexdigest() for n, c in contents.items()})
    monkeypatch.setattr(data, "OFFICIAL_COUNT", {n: 40 if n.startswith("train") else 20 for n in contents})
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    data.read_raw.cache_clear()
    assert read_raw(str(folder)).train.images.shape == (40, 28, 28)
    verified = json.loads((tmp_path / "cache" / "hypotune" / "fashion-mnist" / "verified.json").read_text())
    assert len(verified) == 4  # each file hashed once; the next read trusts (path, size, mtime)
    images = bytearray(contents["train-images-idx3-ubyte"])
    images[5000] ^= 0xFF  # one pixel: the header and the size still agree
    names["train-images-idx3-ubyte"].write_bytes(gzip.compress(bytes(images)))
    data.read_raw.cache_clear()
    with pytest.raises(DataError, match="content is not Fashion-MNIST's .* the file is corrupt"):
        read_raw(str(folder))


def test_a_corrupt_archive_in_the_cache_is_downloaded_again(tmp_path, monkeypatch, http_server):
    url, checksums, served = http_server
    monkeypatch.setattr(data, "SYSTEM_DIR", tmp_path / "system")
    monkeypatch.setattr(data, "SHA256", checksums)
    monkeypatch.setattr(data, "OFFICIAL_COUNT", {n: 60 if n.startswith("train") else 20 for n in checksums})
    monkeypatch.setattr(data.fetch, "__defaults__", ((url,), checksums, 5.0))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("HYPOTUNE_DATA", raising=False)
    data.read_raw.cache_clear()
    assert len(read_raw().train) == 60  # downloaded into the cache
    cached = tmp_path / "cache" / "hypotune" / "fashion-mnist" / "train-labels-idx1-ubyte.gz"
    cached.write_bytes(cached.read_bytes()[:20])  # a disk error, or a copy cut short
    data.read_raw.cache_clear()
    assert len(read_raw().train) == 60  # fetched again instead of failing
    assert cached.read_bytes() == (served / "train-labels-idx1-ubyte.gz").read_bytes()
    data.read_raw.cache_clear()

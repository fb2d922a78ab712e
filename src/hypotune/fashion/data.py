"""Fashion-MNIST: finding, downloading, checking and reading the IDX files; splits; batches.

Each split is one uint8 tensor; a batch is an index slice, normalised on the fly. There is no
per-item DataLoader: at batch 64 it costs more than the small models it feeds.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import hashlib
import json
import os
import shutil
import struct
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from hypotune.errors import DataError
from hypotune.fashion.config import DataConfig

PARTS = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
# SHA-256 of the uncompressed files: the official downloads and Debian's recompressed
# package differ as .gz bytes but agree on this.
SHA256 = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
# Items in each official file: a file with this many is taken to be Fashion-MNIST's, and its
# content must then have the official checksum (checked once per file version, see below).
OFFICIAL_COUNT = {
    "train-images-idx3-ubyte": 60_000,
    "train-labels-idx1-ubyte": 60_000,
    "t10k-images-idx3-ubyte": 10_000,
    "t10k-labels-idx1-ubyte": 10_000,
}
OFFICIAL_URLS = (
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
)
SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
# Per-pixel statistics of the 60,000 training images after scaling to [0, 1].
PIXEL_MEAN, PIXEL_STD = 0.2860, 0.3530
IMAGE_MAGIC, LABEL_MAGIC = 0x00000803, 0x00000801


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "hypotune" / "fashion-mnist"


def search_path(data_dir: str | Path | None = None) -> list[Path]:
    """Directories searched for the IDX files, in order."""
    candidates = [data_dir, os.environ.get("HYPOTUNE_DATA"), SYSTEM_DIR, cache_dir()]
    return [Path(c) for c in candidates if c]


def find_file(directory: Path, name: str) -> Path | None:
    for candidate in (directory / f"{name}.gz", directory / name):
        if candidate.is_file():
            return candidate
    return None


def locate(data_dir: str | Path | None = None, download: bool = True) -> dict[str, Path]:
    """Paths of the four files from the first directory that has all of them.

    An explicitly given directory must hold them; otherwise the official files are
    downloaded into the cache (checksums verified) when no directory has them.
    """
    searched = search_path(data_dir)
    if data_dir:
        searched = searched[:1]
    for directory in searched:
        found = {part: find_file(directory, name) for part, name in PARTS.items()}
        if all(found.values()):
            return found  # type: ignore[return-value]
    if data_dir or not download:
        where = ", ".join(str(d) for d in searched)
        raise DataError(f"Fashion-MNIST IDX files not found; searched: {where}")
    fetch(cache_dir())
    return {part: cache_dir() / f"{name}.gz" for part, name in PARTS.items()}


def fetch(
    target: Path,
    base_urls: Sequence[str] = OFFICIAL_URLS,
    checksums: dict[str, str] = SHA256,
    timeout: float = 60.0,
) -> None:
    """Download the four .gz files into `target`, keeping only files whose content verifies.

    One process downloads at a time (a file lock); it first removes the `.part` files that a
    download killed midway left behind, which no one else can be writing then.
    """
    import fcntl

    target.mkdir(parents=True, exist_ok=True)
    with (target / ".download.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for leftover in target.glob("*.part"):
            leftover.unlink(missing_ok=True)
        _fetch_each(target, base_urls, checksums, timeout)


def _fetch_each(target: Path, base_urls: Sequence[str], checksums: dict[str, str], timeout: float) -> None:
    for name, expected in checksums.items():
        final = target / f"{name}.gz"
        if final.is_file() and _verifies(final, expected):
            continue
        errors = []
        for base in base_urls:
            url = f"{base.rstrip('/')}/{name}.gz"
            try:
                _download_verified(url, final, expected, timeout)
                break
            except (OSError, urllib.error.URLError, DataError) as error:
                errors.append(f"{url}: {getattr(error, 'reason', error)}")
        else:
            raise DataError(f"could not download {name}.gz: " + "; ".join(errors))


def _download_verified(url: str, final: Path, expected: str, timeout: float) -> None:
    with tempfile.NamedTemporaryFile(dir=final.parent, delete=False, suffix=".part") as handle:
        partial = Path(handle.name)
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                shutil.copyfileobj(response, handle)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
    try:
        actual = _sha256_of_gz(partial)
    except DataError:
        partial.unlink(missing_ok=True)
        raise
    if actual != expected:
        partial.unlink(missing_ok=True)
        raise DataError(f"checksum mismatch (sha256 {actual[:12]}..., expected {expected[:12]}...)")
    partial.replace(final)


def _verifies(path: Path, expected: str) -> bool:
    """Whether a downloaded file reads and has the expected content (else it is fetched again)."""
    try:
        return _sha256_of_gz(path) == expected
    except DataError:
        return False


def _sha256_of_gz(path: Path) -> str:
    """SHA-256 of a gzip file's content (downloads are gzip whatever their temporary name)."""
    return hashlib.sha256(_read_bytes(path, compressed=True)).hexdigest()


def _read_bytes(path: Path, compressed: bool | None = None) -> bytes:
    if compressed is None:
        compressed = path.suffix == ".gz"
    try:
        if compressed:
            with gzip.open(path, "rb") as handle:
                return handle.read()
        return path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as error:
        raise DataError(f"{path}: cannot read ({error})") from None


def read_idx(path: Path, expect_magic: int) -> torch.Tensor:
    """One IDX file as a uint8 tensor, its header checked against its size."""
    raw = _read_bytes(path)
    ndim = 3 if expect_magic == IMAGE_MAGIC else 1
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated header ({len(raw)} bytes)")
    magic = struct.unpack(">I", raw[:4])[0]
    if magic != expect_magic:
        raise DataError(f"{path}: bad magic number {magic:#010x}, expected {expect_magic:#010x}")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    if ndim == 3 and dims[1:] != (28, 28):
        raise DataError(f"{path}: images are {dims[1]}x{dims[2]}, expected 28x28")
    expected = header + int(torch.tensor(dims).prod())
    if len(raw) != expected:
        problem = "truncated" if len(raw) < expected else "has trailing bytes"
        raise DataError(f"{path}: {problem} ({len(raw)} bytes, header says {expected})")
    name = path.name.removesuffix(".gz")
    if name in SHA256 and dims[0] == OFFICIAL_COUNT[name]:
        check_content(path, raw, SHA256[name])
    return torch.frombuffer(bytearray(raw[header:]), dtype=torch.uint8).reshape(dims)


def check_content(path: Path, raw: bytes, expected: str) -> None:
    """A file of the official size must have the official content: a header and a size can be
    right while bytes inside are not. Verified once per file version (path, size, mtime)."""
    stat = path.stat()
    stamp = [stat.st_size, stat.st_mtime_ns]
    record = cache_dir() / "verified.json"
    try:
        verified = json.loads(record.read_text())
    except (OSError, ValueError):
        verified = {}
    if verified.get(str(path.resolve())) == stamp:
        return
    actual = hashlib.sha256(raw).hexdigest()
    if actual != expected:
        raise DataError(
            f"{path}: content is not Fashion-MNIST's (sha256 {actual[:12]}..., expected {expected[:12]}...): "
            "the file is corrupt; reinstall it or delete it to download it again"
        )
    verified[str(path.resolve())] = stamp
    with contextlib.suppress(OSError):  # a read-only home only costs a check next time
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps(verified))


@dataclass(frozen=True)
class Split:
    images: torch.Tensor  # uint8, (N, 28, 28)
    labels: torch.Tensor  # int64, (N,)

    def __len__(self) -> int:
        return len(self.labels)

    def to(self, device: torch.device | str) -> Split:
        return Split(self.images.to(device), self.labels.to(device))


@dataclass(frozen=True)
class RawData:
    train: Split
    test: Split
    source: str


@dataclass(frozen=True)
class Dataset:
    train: Split
    val: Split
    test: Split
    source: str  # directory the files came from


@functools.lru_cache(maxsize=4)
def read_raw(data_dir: str = "") -> RawData:
    """The official train and test sets, checked; cached per process."""
    paths = locate(data_dir or None)
    try:
        try:
            return _read_checked(paths)
        except DataError:
            if data_dir or any(path.parent != cache_dir() for path in paths.values()):
                raise
            fetch(cache_dir())  # our own download went bad: fetch again what no longer verifies
            return _read_checked(paths)
    except DataError as error:
        searched = search_path(data_dir or None)[: 1 if data_dir else None]
        raise DataError(f"{error} (searched: {', '.join(map(str, searched))})") from None


def _read_checked(paths: dict[str, Path]) -> RawData:
    splits = {}
    for split in ("train", "test"):
        images = read_idx(paths[f"{split}_images"], IMAGE_MAGIC)
        labels = read_idx(paths[f"{split}_labels"], LABEL_MAGIC).long()
        if len(images) != len(labels):
            raise DataError(
                f"{paths[f'{split}_images']}: {len(images)} images but "
                f"{paths[f'{split}_labels'].name} has {len(labels)} labels"
            )
        if len(labels) and int(labels.max()) > 9:
            raise DataError(f"{paths[f'{split}_labels']}: label {int(labels.max())} outside 0..9")
        splits[split] = Split(images, labels)
    return RawData(splits["train"], splits["test"], str(paths["train_images"].parent))


def stratified_pick(labels: torch.Tensor, count: int, seed: int) -> torch.Tensor:
    """Indices of `count` items with each class in proportion, chosen with `seed`."""
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(labels), generator=generator)
    classes, class_counts = labels.unique(return_counts=True)
    share = class_counts.double() * count / len(labels)
    take = share.floor().long()
    remainder = count - int(take.sum())
    take[torch.argsort(share - take, descending=True)[:remainder]] += 1
    picked = [order[labels[order] == c][:n] for c, n in zip(classes.tolist(), take.tolist(), strict=True)]
    return torch.cat(picked).sort().values


def make_dataset(config: DataConfig, data_dir: str = "") -> Dataset:
    """Train/validation/test splits as configured."""
    raw = read_raw(data_dir)
    train = raw.train
    if config.validate_on_test:
        val = raw.test
    else:
        if config.val_size >= len(train):
            raise DataError(f"data.val_size {config.val_size} leaves no training images of {len(train)}")
        val_index = stratified_pick(train.labels, config.val_size, config.split_seed)
        keep = torch.ones(len(train), dtype=torch.bool)
        keep[val_index] = False
        val = Split(train.images[val_index], train.labels[val_index])
        train = Split(train.images[keep], train.labels[keep])
    if config.train_subset:
        if config.train_subset > len(train):
            raise DataError(
                f"data.train_subset {config.train_subset} exceeds the {len(train)} training images"
            )
        index = stratified_pick(train.labels, config.train_subset, config.split_seed + 1)
        train = Split(train.images[index], train.labels[index])
    test = raw.test
    if config.test_size and config.test_size < len(test):
        index = stratified_pick(test.labels, config.test_size, config.split_seed + 2)
        test = Split(test.images[index], test.labels[index])
    return Dataset(train, val, test, raw.source)


@functools.lru_cache(maxsize=8)
def cached_dataset(config: DataConfig, data_dir: str = "") -> Dataset:
    """`make_dataset`, kept per process: a worker trains many trials on the same splits."""
    return make_dataset(config, data_dir)


def normalize(images: torch.Tensor, mode: str) -> torch.Tensor:
    """uint8 (N, 28, 28) -> float (N, 1, 28, 28)."""
    pixels = images.unsqueeze(1).float().div_(255.0)
    if mode == "standardize":
        pixels.sub_(PIXEL_MEAN).div_(PIXEL_STD)
    return pixels


def augment(batch: torch.Tensor, flip: bool, translate: int, generator: torch.Generator) -> torch.Tensor:
    """Random horizontal flips and shifts, drawn per image, applied to the whole batch at once."""
    size = batch.shape[0]
    if flip:
        flips = torch.rand(size, generator=generator) < 0.5
        batch = torch.where(flips.view(-1, 1, 1, 1).to(batch.device), batch.flip(-1), batch)
    if translate:
        padded = torch.nn.functional.pad(batch, (translate,) * 4)
        shifts = torch.randint(0, 2 * translate + 1, (2, size), generator=generator).to(batch.device)
        steps = torch.arange(batch.shape[-1], device=batch.device)
        rows = (shifts[0].view(-1, 1) + steps).view(size, -1, 1)
        cols = (shifts[1].view(-1, 1) + steps).view(size, 1, -1)
        images = torch.arange(size, device=batch.device).view(-1, 1, 1)
        batch = padded[:, 0][images, rows, cols].unsqueeze(1)
    return batch


class BatchStream:
    """An endless shuffled stream of training batches; reshuffles when a pass ends."""

    def __init__(self, split: Split, batch_size: int, config: DataConfig, seed: int) -> None:
        self.split = split
        self.batch_size = min(batch_size, len(split))
        self.config = config
        self.generator = torch.Generator().manual_seed(seed)
        self.order = torch.randperm(len(split), generator=self.generator)
        self.position = 0

    def batches(self, steps: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for _ in range(steps):
            if self.position + self.batch_size > len(self.order):
                self.order = torch.randperm(len(self.split), generator=self.generator)
                self.position = 0
            index = self.order[self.position : self.position + self.batch_size]
            self.position += self.batch_size
            index = index.to(self.split.images.device)
            images = normalize(self.split.images[index], self.config.normalize)
            if self.config.flip or self.config.translate:
                images = augment(images, self.config.flip, self.config.translate, self.generator)
            yield images, self.split.labels[index]


def eval_batches(split: Split, mode: str, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    for start in range(0, len(split), batch_size):
        stop = start + batch_size
        yield normalize(split.images[start:stop], mode), split.labels[start:stop]

"""CIFAR-10 as uint8 tensors: find a source, decode it once, cache it, fingerprint it.

Sources, in the order the default resolution tries them:
  1. `--data PATH`: a `.tar.gz` of an ImageFolder tree (train/<class>/*.jpg, test/<class>/*.jpg),
     such a tree as a folder, or a folder holding torchvision's `cifar-10-batches-py`;
  2. `$SEEDWISE_DATA`, same forms;
  3. `--data-root` (default ./data; in a study naming `study.cifar.experiment`, the runner's
     --data-root reaches the workers as $SEEDWISE_DATA_ROOT), if it holds either form;
  4. download through torchvision into `--data-root`, as the notebook did.
Decoding happens once per source; afterwards a .npy cache (keyed by a hash of the source) loads
in well under 2 s. Each run records the fingerprint (sha256 of the decoded pixels and labels).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from study.cifar.errors import DataError  # noqa: F401 (raised here; imported from here elsewhere)

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
N_TRAIN, N_TEST = 50_000, 10_000
HOW_TO = ("provide CIFAR-10 with --data PATH or $SEEDWISE_DATA (a .tar.gz or folder of an ImageFolder "
          "tree train/<class>/*.jpg + test/<class>/*.jpg, or a folder with torchvision's "
          "cifar-10-batches-py), or let torchvision download it into --data-root when online")



@dataclass(frozen=True)
class Cifar10:
    train_x: torch.Tensor  # (50000, 3, 32, 32) uint8
    train_y: torch.Tensor  # (50000,) int64
    test_x: torch.Tensor  # (10000, 3, 32, 32) uint8
    test_y: torch.Tensor  # (10000,) int64
    fingerprint: str  # sha256 of the decoded pixels and labels
    source: str  # what was read, for provenance and reports
    cache_path: str


def cache_dir() -> Path:
    root = os.environ.get("SEEDWISE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "seedwise")
    return Path(root)


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _source_key(kind: str, path: Path) -> str:
    """Cache key: content hash for archives and pickled batches; for a tree of 60k files a hash
    of names, sizes and mtimes (reading every file on every load would cost more than the cache
    saves). The run fingerprint is a content hash of the decoded data in every case."""
    h = hashlib.sha256(kind.encode())
    if kind == "archive":
        h.update(_sha256_file(path).encode())
    elif kind == "torchvision":
        for f in sorted((path / "cifar-10-batches-py").glob("*_batch*")):
            h.update(f.name.encode() + _sha256_file(f).encode())
    else:
        for f in sorted(path.rglob("*")):
            if f.is_file():
                st = f.stat()
                h.update(f"{f.relative_to(path)}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:20]


def _classify(path: Path) -> str | None:
    if path.is_file() and path.name.endswith((".tar.gz", ".tgz", ".tar")):
        return "archive"
    if path.is_dir() and (path / "cifar-10-batches-py").is_dir():
        return "torchvision"
    if path.is_dir() and (path / "train").is_dir() and (path / "test").is_dir():
        return "tree"
    return None


def _decode_jpeg(blob: bytes, name: str) -> np.ndarray:
    from PIL import Image

    try:
        img = Image.open(io.BytesIO(blob)).convert("RGB")
    except Exception as e:  # PIL raises many types for bad files
        raise DataError(f"cannot decode image {name!r}: {e}") from None
    if img.size != (32, 32):
        raise DataError(f"image {name!r} is {img.size[0]}x{img.size[1]}, CIFAR-10 images are 32x32")
    return np.asarray(img, dtype=np.uint8)


def _collect(items, origin: str) -> dict[str, np.ndarray]:
    """items: iterable of (relative path 'split/class/file', bytes). Returns the four arrays."""
    split_items: dict[str, list[tuple[str, int, bytes]]] = {"train": [], "test": []}
    for rel, blob in items:
        parts = Path(rel).parts
        if len(parts) < 3 or parts[-3] not in split_items:
            continue
        split, cls = parts[-3], parts[-2]
        if cls not in CLASSES:
            raise DataError(f"{origin}: unknown class folder {cls!r}; CIFAR-10 classes: {', '.join(CLASSES)}")
        split_items[split].append((rel, CLASSES.index(cls), blob))
    out = {}
    for split, expected in (("train", N_TRAIN), ("test", N_TEST)):
        entries = sorted(split_items[split])  # sorted names: a deterministic order
        if len(entries) != expected:
            raise DataError(f"{origin}: found {len(entries)} {split} images, CIFAR-10 has {expected}; {HOW_TO}")
        out[f"{split}_x"] = np.stack([_decode_jpeg(b, r) for r, _, b in entries]).transpose(0, 3, 1, 2).copy()
        out[f"{split}_y"] = np.array([label for _, label, _ in entries], dtype=np.int64)
    return out


def _read_archive(path: Path) -> dict[str, np.ndarray]:
    try:
        with tarfile.open(path) as tar:
            members = (m for m in tar if m.isfile() and m.name.lower().endswith((".jpg", ".jpeg", ".png")))
            # extractfile returns None only for members that are not regular files
            return _collect(((m.name, tar.extractfile(m).read()) for m in members),  # type: ignore[union-attr]
                            str(path))
    except (tarfile.TarError, OSError, EOFError) as e:
        raise DataError(f"{path} is not a readable tar archive ({e}); {HOW_TO}") from None


def _read_tree(path: Path) -> dict[str, np.ndarray]:
    files = (f for f in path.rglob("*") if f.is_file() and f.suffix.lower() in (".jpg", ".jpeg", ".png"))
    return _collect(((str(f.relative_to(path)), f.read_bytes()) for f in files), str(path))


def _read_torchvision(root: Path, download: bool) -> dict[str, np.ndarray]:
    import torchvision

    try:
        # torchvision checks each batch file's MD5 against the published CIFAR-10 release
        # before unpickling it, so only the known files are ever unpickled.
        train = torchvision.datasets.CIFAR10(str(root), train=True, download=download)
        test = torchvision.datasets.CIFAR10(str(root), train=False, download=download)
    except Exception as e:  # RuntimeError (corrupt/missing) or URLError (offline)
        raise DataError(f"torchvision CIFAR10 in {root} failed: {type(e).__name__}: {e}; {HOW_TO}") from None
    return {
        "train_x": np.ascontiguousarray(train.data.transpose(0, 3, 1, 2)),
        "train_y": np.asarray(train.targets, dtype=np.int64),
        "test_x": np.ascontiguousarray(test.data.transpose(0, 3, 1, 2)),
        "test_y": np.asarray(test.targets, dtype=np.int64),
    }


def _fingerprint(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for key in ("train_x", "train_y", "test_x", "test_y"):
        h.update(key.encode())
        h.update(np.ascontiguousarray(arrays[key]).tobytes())
    return h.hexdigest()


def _write_cache(target: Path, arrays: dict[str, np.ndarray], meta: dict) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".tmp-"))
    try:
        for key, arr in arrays.items():
            np.save(tmp / f"{key}.npy", arr, allow_pickle=False)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
        try:
            os.rename(tmp, target)  # atomic: a concurrent or killed writer never leaves half a cache
        except OSError:
            if not (target / "meta.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_cache(path: str | Path) -> Cifar10:
    """Load a decoded cache directory (the fast path; used by every worker process)."""
    path = Path(path)
    try:
        meta = json.loads((path / "meta.json").read_text())
        arrays = {k: np.load(path / f"{k}.npy", allow_pickle=False) for k in ("train_x", "train_y", "test_x", "test_y")}
    except (OSError, ValueError) as e:
        raise DataError(f"the data cache {path} is unreadable ({e}); delete it to rebuild") from None
    return Cifar10(**{k: torch.from_numpy(v) for k, v in arrays.items()},
                   fingerprint=meta["fingerprint"], source=meta["source"], cache_path=str(path))


def _decode(kind: str, path: Path, download: bool = False) -> dict[str, np.ndarray]:
    if kind == "archive":
        return _read_archive(path)
    if kind == "tree":
        return _read_tree(path)
    return _read_torchvision(path, download)


def _load_from(kind: str, path: Path, describe: str) -> Cifar10:
    key = _source_key(kind, path)
    target = cache_dir() / key
    if not (target / "meta.json").exists():
        arrays = _decode(kind, path)
        meta = {"fingerprint": _fingerprint(arrays), "source": describe, "kind": kind}
        _write_cache(target, arrays, meta)
    return dataclasses.replace(load_cache(target), source=describe)  # where it came from this time


def describe_source(kind: str, path: Path) -> str:
    name = "CIFAR-10 (JPEG copy)" if kind in ("archive", "tree") else "CIFAR-10 (torchvision)"
    return f"{name} from {path}"


def named_source(data: str | os.PathLike | None = None) -> tuple[str, Path] | None:
    """The source --data, else $SEEDWISE_DATA, names: (kind, path), checked without reading it
    (the runner checks it before anything is stored); None when neither is set."""
    for origin, value in (("--data", data), ("$SEEDWISE_DATA", os.environ.get("SEEDWISE_DATA") or None)):
        if value is None:
            continue
        path = Path(value).expanduser()
        if not path.exists():
            raise DataError(f"{origin} points to {str(path)!r}, which does not exist; {HOW_TO}")
        kind = _classify(path)
        if kind is None:
            raise DataError(f"{origin} points to {str(path)!r}, which is not a CIFAR-10 source; {HOW_TO}")
        return kind, path
    return None


def load_cifar10(data: str | os.PathLike | None = None, data_root: str | os.PathLike = "./data",
                 download: bool = True) -> Cifar10:
    """Resolve and load CIFAR-10: --data, then $SEEDWISE_DATA, then data_root, then download."""
    named = named_source(data)
    if named is not None:
        return _load_from(named[0], named[1], describe_source(*named))
    root = Path(data_root).expanduser()
    kind = _classify(root) if root.exists() else None
    if kind is not None:
        return _load_from(kind, root, describe_source(kind, root))
    if not download:
        raise DataError(f"no CIFAR-10 found in {root}; {HOW_TO}")
    _read_torchvision(root, download=True)  # fetch and MD5-verify once; raises DataError offline
    return _load_from("torchvision", root, describe_source("torchvision", root))


def split_indices(config, n_train_total: int = N_TRAIN) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) indices into the 50k training images: a fixed permutation by `split_seed`,
    validation first, then the training subset. Every arm and seed gets the same split, unless
    `split_seed = -1`: then the config must be resolved for the run (`config.for_run(seed)`),
    whose seed's "split" stream draws it (the same for both arms of that seed)."""
    if config.split_seed >= 0:
        seed = config.split_seed
    elif getattr(config, "run_split_seed", None) is not None:
        seed = config.run_split_seed
    else:
        raise ValueError("`split_seed = -1` draws the split per seed: train `config.for_run(seed)`, "
                         "not the arm's config")
    perm = np.random.default_rng(seed).permutation(n_train_total)
    val = np.sort(perm[: config.val_size])
    train = np.sort(perm[config.val_size: config.val_size + config.train_size])
    return train, val


def test_indices(config, n_test_total: int = N_TEST) -> np.ndarray:
    """The test images scored: all 10k, or (smoke tests) a fixed random subset. A subset must be
    random, not the first k: the JPEG copy is ordered by class. A per-seed split (-1) scores
    the subset of split_seed 0: every run of a study scores the same test examples."""
    if config.test_size >= n_test_total:
        return np.arange(n_test_total)
    fixed = max(config.split_seed, 0)
    return np.sort(np.random.default_rng([fixed, 1]).permutation(n_test_total)[: config.test_size])

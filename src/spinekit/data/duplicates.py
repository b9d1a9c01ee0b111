"""Duplicate and near-duplicate images: the same pixels under two names (or two patients).

Each decoded image gets a :class:`Fingerprint`:

- ``digest``: BLAKE2b of the decoded pixels (shape, dtype and bytes), so the
  same pixels stored under two names, or re-saved losslessly (PNG <-> TIFF),
  are *exact* duplicates;
- ``phash``: a 64-bit DCT perceptual hash (the 8x8 lowest frequencies of the
  DCT of a 32x32 grey thumbnail, each bit "above the median") and ``thumb``, the
  32x32 grey thumbnail normalised to zero mean and unit norm.

Two images are *near* duplicates (re-encoded JPEG, slight resize, brightness
or contrast change) when their pHashes differ in at most ``max_distance`` bits
(default 8 of 64) **and** their thumbnails correlate at ``min_correlation``
(default 0.97) or more **and** their aspect ratios differ by less than 10 %:
the hash finds candidates, the thumbnail correlation confirms them, so similar
but different scans (two spine X-rays of one protocol) are not merged.
Flat images (a single grey value) take no part: they carry no content to leak.

Duplicates are grouped transitively (union-find); a group is ``exact`` when all
its images have the same pixels, else ``near``. ``spinekit clean`` reports the
groups; ``spinekit split`` keeps every group in one split part.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image
from scipy.fft import dctn

from spinekit.data.cleaning_checks import Finding
from spinekit.data.records import DatasetRecords
from spinekit.errors import InputError
from spinekit.io.images import read_image

HASH_SIDE = 8
"""The pHash is HASH_SIDE x HASH_SIDE bits."""
DCT_SIDE = 32
MAX_DISTANCE = 8
MIN_CORRELATION = 0.97
MAX_ASPECT_LOG_RATIO = float(np.log(1.1))
_POPCOUNT = np.array([bin(v).count("1") for v in range(256)], dtype=np.uint8)


@dataclass(frozen=True)
class Fingerprint:
    """What the duplicate test keeps of one image (see the module docstring)."""

    digest: str
    phash: bytes
    thumb: np.ndarray | None  # None for a flat image
    aspect: float  # width / height


def _thumbnail(pixels: np.ndarray) -> np.ndarray:
    """``(DCT_SIDE, DCT_SIDE)`` float64 grey box-filtered thumbnail (8-bit input stays 8-bit
    until the thumbnail: the fast path)."""
    size, box = (DCT_SIDE, DCT_SIDE), Image.Resampling.BOX
    colour = pixels.ndim == 3
    if pixels.dtype == np.uint8 and (not colour or pixels.shape[2] in (3, 4)):
        small = np.asarray(Image.fromarray(pixels[..., :3] if colour else pixels).resize(size, box),
                           dtype=np.float64)
    else:
        arr = pixels.astype(np.float32)
        planes = [arr[..., c] for c in range(min(arr.shape[2], 3))] if colour else [arr]
        small = np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(p), mode="F")
                                     .resize(size, box), dtype=np.float64) for p in planes], axis=-1)
        small = small if colour else small[..., 0]
    if small.ndim == 3:
        weights = np.array([0.299, 0.587, 0.114])[: small.shape[2]]
        small = small @ (weights / weights.sum())
    return small


def fingerprint(pixels: np.ndarray) -> Fingerprint:
    """Fingerprint of one decoded image (gray ``(H, W)`` or colour ``(H, W, C)``, any dtype)."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{pixels.shape}{pixels.dtype.str}".encode())
    digest.update(np.ascontiguousarray(pixels).tobytes())
    height, width = pixels.shape[:2]
    small = _thumbnail(pixels)
    low = dctn(small, norm="ortho")[:HASH_SIDE, :HASH_SIDE]
    bits = (low > np.median(low)).ravel()
    thumb = (small - small.mean()).ravel()
    norm = float(np.linalg.norm(thumb))
    flat = norm <= 1e-6 * max(1.0, float(np.abs(small).max()))
    return Fingerprint(digest.hexdigest(), np.packbits(bits).tobytes(),
                       None if flat else (thumb / norm).astype(np.float32),
                       width / max(height, 1))


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, i: int, j: int) -> None:
        a, b = self.find(i), self.find(j)
        if a != b:
            self.parent[max(a, b)] = min(a, b)


def _near_pairs(prints: Sequence[Fingerprint], max_distance: int, min_correlation: float,
                block: int = 1024) -> Iterable[tuple[int, int]]:
    """Index pairs ``(i, j)``, ``i < j``, of near-duplicate, non-flat fingerprints."""
    live = [k for k, p in enumerate(prints) if p.thumb is not None]
    if len(live) < 2:
        return
    hashes = np.frombuffer(b"".join(prints[k].phash for k in live), dtype=np.uint8)
    hashes = hashes.reshape(len(live), -1)
    thumbs = np.stack([prints[k].thumb for k in live])  # type: ignore[misc]
    aspect = np.log(np.array([prints[k].aspect for k in live]))
    for start in range(0, len(live), block):
        part = hashes[start:start + block]
        dist = _POPCOUNT[part[:, None, :] ^ hashes[None, :, :]].sum(axis=2, dtype=np.int32)
        for a, b in zip(*np.nonzero(dist <= max_distance), strict=True):
            i, j = start + int(a), int(b)
            if i < j and abs(aspect[i] - aspect[j]) < MAX_ASPECT_LOG_RATIO \
                    and float(thumbs[i] @ thumbs[j]) >= min_correlation:
                yield live[i], live[j]


def duplicate_groups(prints: dict[int, Fingerprint], *, max_distance: int = MAX_DISTANCE,
                     min_correlation: float = MIN_CORRELATION) -> list[tuple[str, list[int]]]:
    """Groups of duplicate image ids: ``[(kind, sorted ids)]``, kind ``exact`` or ``near``.

    ``prints`` maps image id -> fingerprint. Groups are ordered by their first id.
    """
    ids = sorted(prints)
    seq = [prints[i] for i in ids]
    uf = _UnionFind(len(ids))
    first: dict[str, int] = {}
    for k, p in enumerate(seq):
        if p.thumb is not None:
            uf.union(first.setdefault(p.digest, k), k)
    for i, j in _near_pairs(seq, max_distance, min_correlation):
        uf.union(i, j)
    members: dict[int, list[int]] = {}
    for k in range(len(ids)):
        members.setdefault(uf.find(k), []).append(k)
    out = []
    for group in members.values():
        if len(group) > 1:
            kind = "exact" if len({seq[k].digest for k in group}) == 1 else "near"
            out.append((kind, [ids[k] for k in group]))
    return sorted(out, key=lambda g: g[1][0])


def describe_groups(groups: list[tuple[str, list[int]]], images: dict[int, dict[str, Any]],
                    prints: dict[int, Fingerprint]) -> list[dict[str, Any]]:
    """JSON-ready groups: kind, images (id, file, patient), patients, and the evidence."""
    out = []
    for kind, ids in groups:
        rows = [{"image_id": i, "file": str(images[i].get("file_name", "")),
                 "patient_id": images[i].get("patient_id")} for i in ids]
        patients = sorted({str(r["patient_id"]) for r in rows if r["patient_id"] is not None})
        ref = prints[ids[0]]
        evidence = [{"image_id": i, "same_pixels": prints[i].digest == ref.digest,
                     "phash_distance": hamming(ref, prints[i]),
                     "correlation": round(correlation(ref, prints[i]), 4)} for i in ids[1:]]
        out.append({"kind": kind, "images": rows, "patients": patients, "vs_first": evidence})
    return out


def hamming(a: Fingerprint, b: Fingerprint) -> int:
    """Bits in which the pHashes of ``a`` and ``b`` differ."""
    x = np.frombuffer(a.phash, dtype=np.uint8) ^ np.frombuffer(b.phash, dtype=np.uint8)
    return int(_POPCOUNT[x].sum())


def correlation(a: Fingerprint, b: Fingerprint) -> float:
    """Correlation of the two thumbnails (1.0 for identical, 0.0 when one is flat)."""
    if a.thumb is None or b.thumb is None:
        return 0.0
    return float(a.thumb @ b.thumb)


def duplicate_image_findings(groups: list[dict[str, Any]]) -> list[Finding]:
    """``duplicate_image`` findings: one per image of a group after its first, naming both."""
    out = []
    for group in groups:
        first, *rest = group["images"]
        evidence = {e["image_id"]: e for e in group["vs_first"]}
        for row in rest:
            e = evidence[row["image_id"]]
            how = "same pixels as" if e["same_pixels"] else (
                f"near copy (pHash distance {e['phash_distance']}, correlation "
                f"{e['correlation']:.3f}) of")
            out.append(Finding("duplicate_image", row["file"], f"{how} image {first['image_id']} "
                               f"{first['file']!r} (patient {first['patient_id']}; this one: "
                               f"patient {row['patient_id']})", image_id=row["image_id"]))
    return out


def dataset_duplicate_groups(records: DatasetRecords, image_ids: Iterable[int],
                             workers: int = 4) -> list[dict[str, Any]]:
    """Decode the images ``image_ids`` of ``records`` and describe their duplicate groups.

    Images that cannot be read are left out (``spinekit clean`` reports them).
    """
    images = {int(img["id"]): img for img in records.images}

    def one(image_id: int) -> Fingerprint | None:
        image = images[image_id]
        try:
            return fingerprint(read_image(records.image_path(image),
                                          frame=int(image.get("frame") or 0)))
        except InputError:
            return None

    wanted = sorted(set(image_ids) & set(images))
    with ThreadPoolExecutor(max_workers=max(1, min(workers, os.cpu_count() or 1))) as pool:
        prints = {i: p for i, p in zip(wanted, pool.map(one, wanted), strict=True) if p is not None}
    return describe_groups(duplicate_groups(prints), images, prints)

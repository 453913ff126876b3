"""Exact and near-duplicate detection (MinHash LSH), within and across splits.

Texts are given in priority order (the first of a duplicate pair is kept). For near duplicates a
text becomes word shingles (CJK: character shingles) with punctuation and case removed, so two
records differing only by punctuation have identical shingle sets. MinHash signatures are computed
for all texts at once with numpy (a multiply-shift hash family over 64-bit shingle hashes), then
indexed in datasketch's `MinHashLSH`; candidates are confirmed by their estimated Jaccard
similarity so LSH false positives are never dropped.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

import numpy as np

_RE_UNITS = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af]|[^\W_]+")
_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def exact_key(text: str) -> str:
    """Normalised text for exact dedup: NFKC, case-folded, whitespace collapsed."""
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text)
    return " ".join(text.casefold().split())


def shingle_units(text: str) -> list[str]:
    """Words (Latin) and single characters (CJK), lower-cased, punctuation dropped."""
    return _RE_UNITS.findall(text.lower())


@dataclass
class Duplicate:
    """Item `index` duplicates the kept item `twin`; `kind` is exact or near; `similarity` estimated."""

    index: int
    twin: int
    kind: str
    similarity: float


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: spreads bits of combined shingle ids."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def minhash_signatures(texts: list[str], num_perm: int = 128, shingle: int = 3, seed: int = 1,
                       chunk: int = 1 << 16) -> tuple[np.ndarray, np.ndarray]:
    """(signatures uint64 [n, num_perm] with 32-bit values, has_shingles bool [n]) for all texts."""
    from pandas.util import hash_array

    flat: list[str] = []
    lens = np.zeros(len(texts), dtype=np.int64)
    for i, t in enumerate(texts):
        units = shingle_units(t)
        lens[i] = len(units)
        flat.extend(units)
    # pandas hashes strings in C with a fixed key: deterministic across runs, no Python loop
    ids = hash_array(np.array(flat, dtype=object), categorize=False) if flat else np.zeros(0, np.uint64)
    del flat
    rng = np.random.RandomState(seed)
    mult = rng.randint(1, 1 << 62, size=shingle, dtype=np.int64).astype(np.uint64) | np.uint64(1)
    a = (rng.randint(1, 1 << 62, size=num_perm, dtype=np.int64).astype(np.uint64) << np.uint64(1)) | np.uint64(1)
    b = rng.randint(0, 1 << 62, size=num_perm, dtype=np.int64).astype(np.uint64)
    # shingle p of a document starts at token p and holds up to `shingle` tokens of that document
    doc_end = np.repeat(np.cumsum(lens), lens)
    pos = np.arange(len(ids))
    doc_start = doc_end - np.repeat(lens, lens)
    valid = (pos + shingle <= doc_end) | ((pos == doc_start) & (np.repeat(lens, lens) < shingle))
    counts = np.bincount(np.repeat(np.arange(len(texts)), lens)[valid], minlength=len(texts)).astype(np.int64)
    with np.errstate(over="ignore"):
        h = np.zeros(len(ids), dtype=np.uint64)
        for j in range(shingle):
            shifted = np.zeros(len(ids), dtype=np.uint64)
            inside = pos + j < doc_end
            shifted[inside] = ids[pos[inside] + j]
            h += shifted * mult[j]
        hashes = [h[valid]] if valid.any() else []
        sig = np.full((len(texts), num_perm), np.uint64(0xFFFFFFFF), dtype=np.uint64)
        has = counts > 0
        if not hashes:
            return sig, has
        allh = _mix64(hashes[0])
        docs = np.nonzero(has)[0]
        starts = np.concatenate([[0], np.cumsum(counts[docs])[:-1]])
        ends = starts + counts[docs]
        d0 = 0
        while d0 < len(docs):
            d1 = d0 + 1
            while d1 < len(docs) and ends[d1] - starts[d0] <= chunk:
                d1 += 1
            lo, hi = starts[d0], ends[d1 - 1]
            block = allh[lo:hi]
            ph = np.multiply.outer(a, block)
            ph += b[:, None]
            ph >>= np.uint64(32)
            sig[docs[d0:d1]] = np.minimum.reduceat(ph, starts[d0:d1] - lo, axis=1).T
            d0 = d1
    return sig, has


def _lsh_candidates(sig: np.ndarray, active: np.ndarray, threshold: float) -> dict[int, set[int]]:
    """For each active item, the earlier active items sharing at least one LSH band.

    Bands and rows are datasketch's `MinHashLSH` choice for this threshold (equal false positive
    and negative weights); the band buckets are built with numpy sorting instead of one Python
    dict insert per band per item, which is what makes 50k+ rows take well under a second.
    """
    from datasketch.lsh import _optimal_param

    n_bands, rows = _optimal_param(threshold, sig.shape[1], 0.5, 0.5)
    idx = np.nonzero(active)[0]
    out: dict[int, set[int]] = {}
    if len(idx) < 2:
        return out
    rng = np.random.RandomState(12345)
    mult = rng.randint(1, 1 << 62, size=rows, dtype=np.int64).astype(np.uint64) | np.uint64(1)
    with np.errstate(over="ignore"):
        for band in range(n_bands):
            block = sig[idx, band * rows : (band + 1) * rows]
            keys = _mix64((block * mult).sum(axis=1, dtype=np.uint64))
            order = np.argsort(keys, kind="stable")
            sk = keys[order]
            boundary = np.concatenate([[True], sk[1:] != sk[:-1], [True]])
            edges = np.nonzero(boundary)[0]
            for r0, r1 in zip(edges[:-1], edges[1:]):
                if r1 - r0 < 2:
                    continue
                members = idx[order[r0:r1]]  # ascending: the sort is stable and idx ascends
                for k in range(1, len(members)):
                    out.setdefault(int(members[k]), set()).update(int(m) for m in members[:k])
    return out


def find_duplicates(texts: list[str], *, exact: bool = True, near: bool = True, threshold: float = 0.85,
                    num_perm: int = 128, shingle: int = 3, seed: int = 1) -> list[Duplicate]:
    """Duplicates among `texts` (given in priority order): each later copy names its kept twin."""
    dups: list[Duplicate] = []
    dropped = np.zeros(len(texts), dtype=bool)
    if exact:
        seen: dict[str, int] = {}
        for i, t in enumerate(texts):
            key = exact_key(t)
            j = seen.setdefault(key, i)
            if j != i:
                dups.append(Duplicate(i, j, "exact", 1.0))
                dropped[i] = True
    if near:
        sig, has = minhash_signatures(texts, num_perm, shingle, seed)
        cands = _lsh_candidates(sig, has & ~dropped, threshold)
        for i in sorted(cands):
            best, best_sim = -1, 0.0
            for j in sorted(cands[i]):
                if dropped[j]:
                    continue
                sim = float(np.mean(sig[j] == sig[i]))
                if sim >= threshold and sim > best_sim:
                    best, best_sim = j, sim
            if best >= 0:
                dups.append(Duplicate(i, best, "near", best_sim))
                dropped[i] = True
    dups.sort(key=lambda d: d.index)
    return dups

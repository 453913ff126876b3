"""`run_prepare`: the data-quality gate. Read, validate, clean, mask, dedup, split, balance, augment, report.

Output folder: train/validation/test.jsonl (canonical examples; augmented rows carry `_augmented`,
oversampled copies `_oversampled`), quarantine.jsonl (invalid rows, with reasons and fixes),
removed.jsonl (valid rows removed by a later step, with step and reason), report.json,
report.html, class_weights.json (when labels exist) and `fingerprint`. A second call whose inputs
(file bytes, format, columns, config, tokenizer) hash to the same fingerprint returns the cached
result without doing any work. No row leaves silently: every removal is counted by reason.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from tunesmith.config.prepare_schema import SPLIT_NAMES, PrepareConfig, parse_ratios
from tunesmith.data.agreement import agreement
from tunesmith.data.augment import augment_examples
from tunesmith.data.balance import class_weights, resample
from tunesmith.data.clean import TokenCounter, apply_cleaning, example_text, map_texts
from tunesmith.data.dedup import find_duplicates
from tunesmith.data.formats import convert_with_sources
from tunesmith.data.pii import PiiMasker, load_names
from tunesmith.data.quarantine import Quarantine
from tunesmith.data.readers import Record, detect_format, fingerprint_files, read_records
from tunesmith.data.report import length_stats, write_reports
from tunesmith.data.split import group_split, random_split, stratified_split
from tunesmith.errors import DataError

PREPARE_VERSION = "1"
_SPLIT_ALIASES = {"val": "validation", "valid": "validation", "dev": "validation", "eval": "validation"}


@dataclass
class PrepareResult:
    """What `run_prepare` produced: file paths, counts after each step, removals by reason, split sizes."""

    out_dir: Path
    paths: dict[str, Path]
    counts: dict[str, int]
    removed: dict[str, int]
    splits: dict[str, int]
    fingerprint: str
    from_cache: bool = False
    report: dict = field(default_factory=dict, repr=False)


@dataclass
class _Row:
    ex: dict
    split: str
    rec: Record


class _Log:
    """Step table and removed-row log shared by the stages."""

    def __init__(self):
        self.steps: list[dict] = []
        self.removed_rows: list[dict] = []
        self.by_reason: Counter = Counter()
        self.timings: dict[str, float] = {}
        self._t = time.perf_counter()

    def step(self, name: str, n_in: int, n_out: int, removed: Counter | None = None, **extra) -> None:
        now = time.perf_counter()
        self.timings[name] = round(now - self._t, 3)
        self._t = now
        self.steps.append({"step": name, "in": n_in, "out": n_out, "removed": dict(removed or {}), **extra})

    def drop(self, row: _Row, step: str, reason: str, detail: str = "") -> None:
        self.by_reason[reason] += 1
        self.removed_rows.append({"file": row.rec.file, "line": row.rec.line, "index": row.rec.index,
                                  "split": row.split, "step": step, "reason": reason, "detail": detail,
                                  "record": row.ex})


def run_prepare(
    files: dict[str, list[Path]], fmt: str, columns: dict | None, cfg: PrepareConfig | None, out_dir: Path, *,
    tokenizer=None, max_bad_fraction: float = 0.05, format_options: dict | None = None,
    translate: Callable[[list[str], str, str], list[str]] | None = None,
) -> PrepareResult:
    """Prepare the data of `files` (split name -> files) into `out_dir`; see the module docstring.

    `format_options` go to the format converter (e.g. classification `labels`, `problem_type`);
    `translate(texts, src, tgt)` backs the back_translation augmentation. Raises DataError when
    more than `max_bad_fraction` of the records are invalid (quarantine.jsonl is written first).
    """
    cfg = cfg or PrepareConfig()
    out_dir = Path(out_dir)
    files = _normalise_files(files)
    fp = prepare_fingerprint(files, fmt, columns, cfg, tokenizer, max_bad_fraction, format_options, translate)
    if cfg.cache:
        cached = load_cached(out_dir, fp)
        if cached is not None:
            return cached
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "fingerprint").unlink(missing_ok=True)  # an interrupted run must never look cached
    log = _Log()
    counter = TokenCounter(tokenizer) if tokenizer is not None else None
    report: dict[str, Any] = {"fingerprint": fp, "format": fmt, "config": cfg.model_dump(mode="json")}

    rows, quarantine, n_read, report["inputs"] = _read_validate(files, fmt, columns, cfg, format_options, log, report)
    qpath = quarantine.write(out_dir / "quarantine.jsonl")
    report["quarantine"] = _quarantine_summary(quarantine, cfg.report.max_listed)
    quarantine.enforce(n_read, max_bad_fraction, qpath)

    rows = _clean(rows, cfg, counter, log, report)
    rows = _mask_pii(rows, cfg, log, report)
    rows = _dedup(rows, cfg, log, report)
    rows = _split(rows, cfg, log)
    rows = _balance(rows, cfg, log, report)
    rows = _augment(rows, cfg, translate, log, report)
    return _finish(rows, fmt, cfg, counter, log, report, out_dir, fp, format_options)


# ----------------------------------------------------------------------------- stages
def _read_validate(files, fmt, columns, cfg, format_options, log, report):
    quarantine, rows, inputs, n_read = Quarantine(), [], {}, 0
    records_by_split: list[tuple[str, Record]] = []
    for split, paths in files.items():
        inputs[split] = []
        for p in paths:
            recs = list(read_records(p, fmt=_reader_format(p, fmt)))
            inputs[split].append({"file": str(p), "records": len(recs)})
            records_by_split += [(split, r) for r in recs]
    n_read = len(records_by_split)
    log.step("read", n_read, n_read)
    if cfg.agreement is not None:
        records_by_split = _resolve_agreement(records_by_split, cfg, log, report)
    kept, rejects = convert_with_sources([r for _, r in records_by_split], fmt, columns, **(format_options or {}))
    quarantine.extend(rejects)
    split_of = {id(r): s for s, r in records_by_split}
    rows = [_Row(ex, split_of[id(rec)], rec) for rec, ex in kept]
    by = Counter({f"invalid: {k}": v for k, v in quarantine.counts_by_reason().items()})
    log.by_reason.update(by)
    log.step("validate", len(records_by_split), len(rows), by)
    return rows, quarantine, n_read, inputs


def _resolve_agreement(records, cfg, log, report):
    ac = cfg.agreement
    usable = [(s, r) for s, r in records if r.data is not None]
    labels = [tuple(_norm_label(r.data.get(c)) for c in ac.columns) for _, r in usable]
    res = agreement(labels, ac.policy)
    dropped = Counter()
    out = [(s, r) for s, r in records if r.data is None]
    for i, (s, r) in enumerate(usable):
        if res.resolved[i] is None:
            reason = res.dropped[i]
            dropped[reason] += 1
            log.drop(_Row(dict(r.data), s, r), "agreement", reason, f"labels {labels[i]}")
            continue
        r.data = {**r.data, ac.output: res.resolved[i]}
        out.append((s, r))
    report["agreement"] = {**res.summary(), "columns": ac.columns, "policy": ac.policy,
                           "disagreeing": [{"where": usable[i][1].where(), "labels": list(labels[i])}
                                           for i in res.disagreements[: cfg.report.max_listed]]}
    log.step("agreement", len(records), len(out), dropped, kappa=res.kappa)
    return out


def _clean(rows, cfg, counter, log, report):
    kept, removed, stats = apply_cleaning([r.ex for r in rows], cfg.clean, token_counter=counter)
    gone = {pos: (reason, detail) for pos, reason, detail in removed}
    by = Counter()
    out, it = [], iter(kept)
    for pos, row in enumerate(rows):
        if pos in gone:
            by[gone[pos][0]] += 1
            log.drop(row, "clean", *gone[pos])
        else:
            row.ex = next(it)
            out.append(row)
    report["cleaning"] = stats
    log.step("clean", len(rows), len(out), by)
    return out


def _mask_pii(rows, cfg, log, report):
    pc = cfg.pii
    if not pc.enabled or not pc.types:
        report["pii"] = {"enabled": False, "counts": {}}
        log.step("pii", len(rows), len(rows))
        return rows
    names = None
    if "name_en" in pc.types:
        names = load_names(pc.name_list) | set(pc.extra_names)
    masker = PiiMasker(pc.types, pc.placeholder, names)
    touched = 0
    for row in rows:
        before = sum(masker.counts.values())
        row.ex = map_texts(row.ex, masker.mask)
        touched += sum(masker.counts.values()) > before
    report["pii"] = {"enabled": True, "types": list(pc.types), "counts": dict(masker.counts), "records_masked": touched}
    log.step("pii", len(rows), len(rows), masked=dict(masker.counts))
    return rows


def _dedup(rows, cfg, log, report):
    dc = cfg.dedup
    if not (dc.exact or dc.near):
        report["duplicates"] = {"counts": {}, "examples": []}
        log.step("dedup", len(rows), len(rows))
        return rows
    prio = ["train", "validation", "test"] if dc.cross_split == "drop_from_eval" else ["test", "validation", "train"]
    order = sorted(range(len(rows)), key=lambda i: prio.index(rows[i].split))
    ordered = [rows[i] for i in order]
    dups = find_duplicates([example_text(r.ex) for r in ordered], exact=dc.exact, near=dc.near,
                           threshold=dc.threshold, num_perm=dc.num_perm, shingle=dc.shingle, seed=cfg.seed)
    by, examples, gone = Counter(), [], set()
    for d in dups:
        row, twin = ordered[d.index], ordered[d.twin]
        reason = f"{d.kind}_duplicate" if row.split == twin.split else f"cross_split_{d.kind}_duplicate"
        by[reason] += 1
        gone.add(d.index)
        log.drop(row, "dedup", reason, f"twin {twin.rec.where()} ({twin.split}), similarity {d.similarity:.2f}")
        if len(examples) < cfg.report.max_listed:
            examples.append({"removed": f"{row.rec.where()} ({row.split})", "kept": f"{twin.rec.where()} ({twin.split})",
                             "kind": reason, "similarity": round(d.similarity, 3)})
    out = [r for i, r in enumerate(ordered) if i not in gone]
    out.sort(key=lambda r: (list(SPLIT_NAMES).index(r.split), r.rec.file, r.rec.index))
    report["duplicates"] = {"counts": dict(by), "threshold": dc.threshold, "examples": examples}
    log.step("dedup", len(rows), len(out), by)
    return out


def _split(rows, cfg, log):
    sc = cfg.split
    given = {r.split for r in rows} - {"train"}
    ratios = parse_ratios(sc.ratios)
    ratios = {k: (0.0 if k in given else v) for k, v in ratios.items()}
    total = sum(ratios.values())
    ratios = {k: v / total for k, v in ratios.items()}
    pool = [r for r in rows if r.split == "train"]
    if ratios["train"] < 1.0 and pool:
        if sc.method == "random":
            names = random_split(len(pool), ratios, cfg.seed)
        else:
            keys = [_key(r, sc.by or "label") for r in pool]
            names = (stratified_split if sc.method == "stratified" else group_split)(keys, ratios, cfg.seed)
        for r, name in zip(pool, names):
            r.split = name
    sizes = Counter(r.split for r in rows)
    log.step("split", len(rows), len(rows), method=sc.method, sizes={k: sizes.get(k, 0) for k in SPLIT_NAMES})
    return rows


def _balance(rows, cfg, log, report):
    bc = cfg.balance
    train = [r for r in rows if r.split == "train"]
    keys = [_key(r, bc.by) for r in train]
    if bc.method == "none" or not train or all(k is None for k in keys):
        report["balance"] = {"method": "none" if bc.method == "none" else "skipped: no labels"}
        return rows
    before = Counter(keys)
    idx = resample(keys, bc.method, bc.target_ratio, cfg.seed)
    seen, new_train = set(), []
    for i in idx:
        r = train[i]
        if i in seen:
            r = _Row({**r.ex, "_oversampled": True}, r.split, r.rec)
        seen.add(i)
        new_train.append(r)
    by = Counter()
    for i in set(range(len(train))) - seen:
        by["undersampled"] += 1
        log.drop(train[i], "balance", "undersampled", f"{bc.by}={keys[i]!r}")
    after = Counter(_key(r, bc.by) for r in new_train)
    report["balance"] = {"method": bc.method, "target_ratio": bc.target_ratio,
                         "before": {str(k): v for k, v in before.items()}, "after": {str(k): v for k, v in after.items()}}
    out = new_train + [r for r in rows if r.split != "train"]
    log.step("balance", len(rows), len(out), by, added=len(idx) - len(seen))
    return out


def _augment(rows, cfg, translate, log, report):
    ac = cfg.augment
    if not ac.ops:
        report["augmentation"] = {"ops": [], "added": {}}
        return rows
    train = [r for r in rows if r.split == "train" and not r.ex.get("_oversampled")]
    new = augment_examples([r.ex for r in train], ac.ops, fraction=ac.fraction, fields=ac.fields,
                           seed=cfg.seed, translate=translate)
    added = Counter(ex["_augmented"] for ex in new)
    aug_rec = Record(data=None, file="(augmented)", line=None, index=-1)
    out = rows + [_Row(ex, "train", aug_rec) for ex in new]
    report["augmentation"] = {"ops": [op.op for op in ac.ops], "added": dict(added)}
    log.step("augment", len(rows), len(out), added=dict(added))
    return out


def _finish(rows, fmt, cfg, counter, log, report, out_dir, fp, format_options) -> PrepareResult:
    by_split = {name: [r.ex for r in rows if r.split == name] for name in SPLIT_NAMES}
    paths = {}
    for name, exs in by_split.items():
        paths[name] = out_dir / f"{name}.jsonl"
        with open(paths[name], "w", encoding="utf-8") as f:
            f.writelines(json.dumps(ex, ensure_ascii=False) + "\n" for ex in exs)
    with open(out_dir / "removed.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in log.removed_rows)
    paths["quarantine"], paths["removed"] = out_dir / "quarantine.jsonl", out_dir / "removed.jsonl"
    texts = {name: [example_text(ex) for ex in exs] for name, exs in by_split.items()}
    lengths: dict[str, dict] = {"chars": {n: length_stats([len(t) for t in ts], cfg.report.bins) for n, ts in texts.items()}}
    if counter is not None:
        lengths["tokens"] = {n: length_stats(counter.count(ts), cfg.report.bins) for n, ts in texts.items()}
    log.step("tokenize+stats", len(rows), len(rows))
    labels = {n: [_label_of(ex) for ex in exs] for n, exs in by_split.items()}
    report["label_distribution"] = _label_distribution(labels)
    weights = {}
    if cfg.balance.class_weights and fmt == "classification" and any(v is not None for v in labels["train"]):
        if not any(isinstance(v, float) for v in labels["train"]):
            weights = class_weights(labels["train"])
            paths["class_weights"] = out_dir / "class_weights.json"
            paths["class_weights"].write_text(json.dumps(weights, ensure_ascii=False, indent=2), encoding="utf-8")
    splits = {n: len(v) for n, v in by_split.items()}
    counts = {s["step"]: s["out"] for s in log.steps}
    report.update({"steps": log.steps, "removed_by_reason": dict(log.by_reason), "splits": splits,
                   "lengths": lengths, "class_weights": weights, "timings_s": log.timings,
                   "counts": counts, "tokenizer": getattr(counter.tokenizer, "name_or_path", None) if counter else None})
    for key in ("cleaning", "pii", "duplicates", "balance", "augmentation", "agreement"):
        report.setdefault(key, None)
    paths["report_json"], hpath = write_reports(report, out_dir, cfg.report.html)
    if hpath is not None:
        paths["report_html"] = hpath
    paths["fingerprint"] = out_dir / "fingerprint"
    paths["fingerprint"].write_text(fp + "\n", encoding="utf-8")
    return PrepareResult(out_dir, paths, counts, dict(log.by_reason), splits, fp, False, report)


# ----------------------------------------------------------------------------- cache and helpers
def prepare_fingerprint(files, fmt, columns, cfg, tokenizer=None, max_bad_fraction=0.05, format_options=None,
                        translate=None) -> str:
    """Hash of everything that decides the output: file bytes, format, columns, config, tokenizer."""
    tok = None
    if tokenizer is not None:
        tok = [type(tokenizer).__name__, getattr(tokenizer, "name_or_path", None), len(tokenizer)]
    parts = {
        "version": PREPARE_VERSION, "fmt": fmt, "columns": columns, "format_options": format_options,
        "files": {s: [[str(p), fingerprint_files(p)] for p in ps] for s, ps in files.items()},
        "config": cfg.model_dump(mode="json", exclude={"cache"}), "tokenizer": tok,
        "max_bad_fraction": max_bad_fraction,
        "translate": None if translate is None else getattr(translate, "fingerprint", getattr(translate, "__qualname__", repr(translate))),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def load_cached(out_dir: Path, fp: str) -> PrepareResult | None:
    """The result stored in `out_dir` when its fingerprint is `fp` and its files are all there."""
    fpath = Path(out_dir) / "fingerprint"
    try:
        if fpath.read_text(encoding="utf-8").strip() != fp:
            return None
        report = json.loads((Path(out_dir) / "report.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    paths = {n: Path(out_dir) / f"{n}.jsonl" for n in SPLIT_NAMES}
    paths.update(quarantine=Path(out_dir) / "quarantine.jsonl", removed=Path(out_dir) / "removed.jsonl",
                 report_json=Path(out_dir) / "report.json", fingerprint=fpath)
    if (Path(out_dir) / "report.html").exists():
        paths["report_html"] = Path(out_dir) / "report.html"
    if (Path(out_dir) / "class_weights.json").exists():
        paths["class_weights"] = Path(out_dir) / "class_weights.json"
    if not all(p.exists() for p in paths.values()):
        return None
    return PrepareResult(Path(out_dir), paths, report.get("counts", {}), report.get("removed_by_reason", {}),
                         report.get("splits", {}), fp, True, report)


def _normalise_files(files) -> dict[str, list[Path]]:
    out: dict[str, list[Path]] = {}
    for name, paths in files.items():
        split = _SPLIT_ALIASES.get(name, name)
        if split not in SPLIT_NAMES:
            raise DataError(f"prepare: unknown split name {name!r}; use train, validation (or val/dev) or test")
        out.setdefault(split, []).extend(Path(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths))
    if not out:
        raise DataError("prepare: no data files given; give at least {'train': [path]}")
    return out


def _reader_format(path: Path, fmt: str) -> str | None:
    try:
        return detect_format(path)
    except DataError:
        if fmt == "ner":
            return "conll"
        raise


def _norm_label(v):
    if v is None or (isinstance(v, str) and not v.strip()):
        return None
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    return str(v).strip()


def _key(row: _Row, by: str):
    v = row.ex.get(by) if by in row.ex else (row.rec.data or {}).get(by)
    if isinstance(v, list):
        return tuple(v)
    return v


def _label_of(ex: dict):
    if "label" in ex:
        return ex["label"]
    if "tags" in ex:
        return [t[2:] if t[:2] in ("B-", "I-", "E-", "S-") else t for t in ex["tags"] if t != "O"]
    return None


def _label_distribution(labels: dict[str, list]) -> dict[str, dict[str, int]]:
    out = {}
    for split, ys in labels.items():
        c: Counter = Counter()
        for y in ys:
            if isinstance(y, list):
                c.update(map(str, y))
            elif y is not None and not isinstance(y, float):
                c[str(y)] += 1
        if c:
            out[split] = dict(sorted(c.items()))
    return out


def _quarantine_summary(q: Quarantine, max_listed: int) -> dict:
    return {"total": len(q), "by_reason": q.counts_by_reason(),
            "examples": [{"where": r.record.where(), "field": r.field, "reason": r.reason, "fix": r.fix}
                         for r in q.rejects[:max_listed]]}

"""Human evaluation round trip: export a blind CSV rating sheet, import the filled sheets.

The sheet has one row per (example, model) in shuffled order, with opaque item ids, so raters
do not see which model wrote an answer. Columns:
    item_id, rater, input, reference, output, fluency, relevance, safety, comment
Ratings are integers 1-5; a blank cell means "not rated". The key that maps item_id to model
label and example index is written beside the sheet as `<sheet>.key.json`.

Several raters either each fill a copy (one file per rater) or share one file with a row per
rater and item. Agreement per criterion: mean pairwise quadratic-weighted Cohen's kappa
(scikit-learn) over items both raters scored, exact agreement and within-one agreement.
"""

from __future__ import annotations

import csv
import itertools
import json
import random
from pathlib import Path
from typing import Sequence

from tunesmith.errors import DataError

CRITERIA = ("fluency", "relevance", "safety")
COLUMNS = ("item_id", "rater", "input", "reference", "output", *CRITERIA, "comment")


def key_path_for(sheet_path: str | Path) -> Path:
    p = Path(sheet_path)
    return p.with_name(p.name + ".key.json")


def export_sheet(path: str | Path, results: dict[str, dict] | dict, *, n: int | None = None,
                 seed: int = 0, rater: str = "") -> dict:
    """Write the blind rating sheet for one evaluation result or {label: result}.

    The first `n` examples of each model are included (all when None). Returns
    {"sheet": path, "key": key path, "n_items": int}.
    """
    if "examples" in results:
        results = {results.get("label", "model"): results}
    items = []
    for label, res in results.items():
        for ex in res["examples"][: n if n else None]:
            items.append((label, ex))
    random.Random(seed).shuffle(items)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    key = {}
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        for i, (label, ex) in enumerate(items, 1):
            item_id = f"item-{i:04d}"
            key[item_id] = {"model": label, "index": ex["index"]}
            w.writerow({"item_id": item_id, "rater": rater, "input": ex["input"],
                        "reference": ex["reference"], "output": ex["prediction"]})
    kp = key_path_for(path)
    kp.write_text(json.dumps(key, indent=1, ensure_ascii=False), encoding="utf-8")
    return {"sheet": str(path), "key": str(kp), "n_items": len(items)}


def _read_sheet(path: Path, default_rater: str) -> list[dict]:
    rows = []
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        missing = [c for c in ("item_id", *CRITERIA) if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"{path}: missing column(s) {', '.join(missing)}; export a fresh sheet "
                            "with `export_sheet` and keep its header row")
        for line_no, row in enumerate(reader, 2):
            scores = {}
            for c in CRITERIA:
                cell = (row.get(c) or "").strip()
                if not cell:
                    continue
                try:
                    v = float(cell)
                except ValueError:
                    v = None
                if v is None or v != int(v) or not 1 <= v <= 5:
                    raise DataError(f"{path}:{line_no}: column {c!r} is {cell!r}; ratings must be "
                                    "whole numbers 1-5 or left blank")
                scores[c] = int(v)
            if scores:
                rows.append({"item_id": row["item_id"], "rater": (row.get("rater") or "").strip() or default_rater,
                             "scores": scores})
    return rows


def _agreement(ratings: dict[str, dict[str, int]]) -> dict:
    """ratings: {rater: {item_id: score}} for one criterion."""
    from sklearn.metrics import cohen_kappa_score

    kappas, exact, within1, pairs = [], 0, 0, 0
    for a, b in itertools.combinations(sorted(ratings), 2):
        common = sorted(ratings[a].keys() & ratings[b].keys())
        if not common:
            continue
        x = [ratings[a][i] for i in common]
        y = [ratings[b][i] for i in common]
        pairs += len(common)
        exact += sum(p == q for p, q in zip(x, y))
        within1 += sum(abs(p - q) <= 1 for p, q in zip(x, y))
        if len(set(x) | set(y)) > 1:
            kappas.append(float(cohen_kappa_score(x, y, weights="quadratic", labels=[1, 2, 3, 4, 5])))
        else:
            kappas.append(1.0)
    if not pairs:
        return {"n_pairs": 0, "kappa_quadratic": None, "exact": None, "within_one": None}
    return {"n_pairs": pairs, "kappa_quadratic": sum(kappas) / len(kappas),
            "exact": exact / pairs, "within_one": within1 / pairs}


def import_sheets(paths: Sequence[str | Path] | str | Path, key_path: str | Path | None = None) -> dict:
    """Read filled sheets; returns {"n_ratings", "raters", "by_model": {model: {criterion:
    {"mean", "n"}}}, "overall": {criterion: {"mean", "n"}}, "agreement": {criterion: {...}}}."""
    paths = [Path(paths)] if isinstance(paths, (str, Path)) else [Path(p) for p in paths]
    key_file = Path(key_path) if key_path else key_path_for(paths[0])
    key = json.loads(key_file.read_text(encoding="utf-8")) if key_file.exists() else {}
    rows = []
    for i, p in enumerate(paths):
        rows.extend(_read_sheet(p, default_rater=f"rater_{i + 1}"))
    by_model: dict = {}
    overall: dict = {c: [] for c in CRITERIA}
    per_rater: dict = {c: {} for c in CRITERIA}
    for r in rows:
        model = key.get(r["item_id"], {}).get("model", "unknown")
        for c, v in r["scores"].items():
            by_model.setdefault(model, {}).setdefault(c, []).append(v)
            overall[c].append(v)
            per_rater[c].setdefault(r["rater"], {})[r["item_id"]] = v

    def summ(vals):
        return {"mean": sum(vals) / len(vals) if vals else None, "n": len(vals)}

    return {
        "n_ratings": len(rows),
        "raters": sorted({r["rater"] for r in rows}),
        "by_model": {m: {c: summ(v) for c, v in sorted(cs.items())} for m, cs in sorted(by_model.items())},
        "overall": {c: summ(v) for c, v in overall.items()},
        "agreement": {c: _agreement(per_rater[c]) for c in CRITERIA},
    }

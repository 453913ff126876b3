"""Classification, regression and NER metrics through scikit-learn and seqeval (none hand-written),
the confusion matrix (JSON + PNG heat map) and the file of misclassified examples."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Sequence

import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-logits))


def classification_metrics(y_true: Sequence[int], y_pred: Sequence[int], labels: Sequence[str],
                           probs: np.ndarray | None = None) -> dict:
    """accuracy; precision/recall/F1 macro, micro, weighted; AUC-ROC (binary or one-vs-rest macro)."""
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support, roc_auc_score

    ids = list(range(len(labels)))
    out = {"accuracy": float(accuracy_score(y_true, y_pred))}
    for avg in ("macro", "micro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, labels=ids, average=avg, zero_division=0)
        out.update({f"precision_{avg}": float(p), f"recall_{avg}": float(r), f"f1_{avg}": float(f)})
    if probs is not None and len(set(y_true)) > 1:
        try:
            if len(labels) == 2:
                out["auc_roc"] = float(roc_auc_score(y_true, probs[:, 1]))
            elif len(set(y_true)) == len(labels):
                out["auc_roc"] = float(roc_auc_score(y_true, probs, multi_class="ovr", labels=ids))
        except ValueError:
            pass  # undefined for this label set; leave it out rather than report a made-up value
    return out


def multilabel_metrics(y_true: np.ndarray, y_pred: np.ndarray, probs: np.ndarray | None = None) -> dict:
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support, roc_auc_score

    out = {"subset_accuracy": float(accuracy_score(y_true, y_pred))}
    for avg in ("macro", "micro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, average=avg, zero_division=0)
        out.update({f"precision_{avg}": float(p), f"recall_{avg}": float(r), f"f1_{avg}": float(f)})
    if probs is not None:
        try:
            out["auc_roc"] = float(roc_auc_score(y_true, probs, average="macro"))
        except ValueError:
            pass
    return out


def regression_metrics(y_true: Sequence[float], y_pred: Sequence[float]) -> dict:
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    return {"mse": float(mean_squared_error(y_true, y_pred)), "mae": float(mean_absolute_error(y_true, y_pred)),
            "r2": float(r2_score(y_true, y_pred)) if len(y_true) > 1 else 0.0}


def per_class_report(y_true, y_pred, labels: Sequence[str]) -> dict:
    from sklearn.metrics import classification_report

    return classification_report(y_true, y_pred, labels=list(range(len(labels))), target_names=list(labels),
                                 output_dict=True, zero_division=0)


def confusion(y_true, y_pred, labels: Sequence[str]) -> dict:
    """{"labels": [...], "matrix": [[...]]}: rows true, columns predicted (the report reads this)."""
    from sklearn.metrics import confusion_matrix

    m = confusion_matrix(y_true, y_pred, labels=list(range(len(labels))))
    return {"labels": list(labels), "matrix": m.tolist()}


def write_confusion(run_dir: Path, cm: dict) -> None:
    from tunesmith.eval.plots import confusion_matrix_plot

    (run_dir / "confusion_matrix.json").write_text(json.dumps(cm, indent=2, ensure_ascii=False))
    (run_dir / "confusion_matrix.png").write_bytes(base64.b64decode(confusion_matrix_plot(cm["labels"], cm["matrix"])))


def error_rows(examples: Sequence[dict], gold: Sequence[str], pred: Sequence[str], confidence: Sequence[float],
               limit: int = 1000) -> list[dict]:
    """Misclassified examples, most confident mistakes first."""
    rows = [{"text": ex["text"], **({"text_pair": ex["text_pair"]} if ex.get("text_pair") else {}),
             "gold": g, "predicted": p, "confidence": round(float(c), 4)}
            for ex, g, p, c in zip(examples, gold, pred, confidence) if g != p]
    rows.sort(key=lambda r: -r["confidence"])
    return rows[:limit]


def write_jsonl(path: Path, rows: Sequence[dict]) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def classification_compute_metrics(problem_type: str, labels: Sequence[str]):
    """A Trainer `compute_metrics` for the problem type (used on validation to pick the best checkpoint)."""

    def compute(eval_pred) -> dict:
        logits, y = _as_array(eval_pred.predictions), np.asarray(eval_pred.label_ids)
        if problem_type == "regression":
            return regression_metrics(y.reshape(-1), logits.reshape(-1))
        if problem_type == "multi_label":
            probs = sigmoid(logits)
            return multilabel_metrics(y.astype(int), (probs >= 0.5).astype(int), probs)
        probs = softmax(logits)
        return classification_metrics(y, probs.argmax(-1), labels, probs)

    return compute


def ner_metrics(gold: list[list[str]], pred: list[list[str]], scheme: str = "BIO") -> dict:
    """Entity-level precision/recall/F1 (micro overall, plus per type) via seqeval."""
    from seqeval.metrics import classification_report, f1_score, precision_score, recall_score

    kwargs = {}
    if scheme == "BIOES":
        from seqeval.scheme import IOBES

        kwargs = {"mode": "strict", "scheme": IOBES}
    out = {"precision": float(precision_score(gold, pred, **kwargs)), "recall": float(recall_score(gold, pred, **kwargs)),
           "f1": float(f1_score(gold, pred, **kwargs))}
    report = classification_report(gold, pred, output_dict=True, zero_division=0, **kwargs)
    out["per_type"] = {k: {m: float(v) for m, v in d.items()} for k, d in report.items()}
    return out


def ner_tags_from_ids(pred_ids: np.ndarray, label_ids: np.ndarray, labels: Sequence[str]):
    """Word-level gold/pred tag lists from token arrays, keeping positions whose label is not -100."""
    gold, pred = [], []
    for p_row, l_row in zip(pred_ids, label_ids):
        keep = l_row != -100
        gold.append([labels[i] for i in l_row[keep]])
        pred.append([labels[i] for i in p_row[keep]])
    return gold, pred


def ner_compute_metrics(labels: Sequence[str], scheme: str = "BIO"):
    def compute(eval_pred) -> dict:
        logits, y = _as_array(eval_pred.predictions), np.asarray(eval_pred.label_ids)
        gold, pred = ner_tags_from_ids(logits.argmax(-1), y, labels)
        m = ner_metrics(gold, pred, scheme)
        return {k: v for k, v in m.items() if k != "per_type"}

    return compute


def _as_array(predictions) -> np.ndarray:
    return np.asarray(predictions[0] if isinstance(predictions, (tuple, list)) else predictions)


def write_classification_test(run_dir: Path, logits, examples: Sequence[dict], label_map, limit: int = 1000,
                              label_ids=None) -> dict:
    """Test metrics (test_*), per-class report, confusion matrix JSON/PNG and errors.jsonl in run_dir.
    `label_ids` (the labels that came back with the predictions) must match the examples' order."""
    logits = _as_array(logits)
    problem, labels = label_map.problem_type, label_map.labels
    gold = [label_map.encode(ex["label"]) for ex in examples]
    if label_ids is not None and not np.allclose(np.asarray(label_ids, dtype=float).reshape(len(gold), -1),
                                                 np.asarray(gold, dtype=float).reshape(len(gold), -1)):
        raise RuntimeError("test predictions came back in a different order from the test examples; "
                           "their metrics and error file would pair the wrong rows")
    if problem == "regression":
        m = regression_metrics(gold, logits.reshape(-1).tolist())
    elif problem == "multi_label":
        probs = sigmoid(logits)
        pred = (probs >= 0.5).astype(int)
        m = multilabel_metrics(np.asarray(gold, dtype=int), pred, probs)
        decoded = [label_map.decode(p) for p in pred]
        conf = [float(np.where(p >= 0.5, p, 1 - p).min()) for p in probs]
        write_jsonl(run_dir / "errors.jsonl", error_rows(examples, [sorted(ex["label"]) for ex in examples],
                                                         [sorted(d) for d in decoded], conf, limit))
    else:
        probs = softmax(logits)
        pred = probs.argmax(-1)
        m = classification_metrics(gold, pred, labels, probs)
        report = per_class_report(gold, pred, labels)
        (run_dir / "classification_report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
        write_confusion(run_dir, confusion(gold, pred, labels))
        write_jsonl(run_dir / "errors.jsonl", error_rows(examples, [labels[g] for g in gold],
                                                         [labels[p] for p in pred], probs.max(-1), limit))
    m = {f"test_{k}": v for k, v in m.items()}
    (run_dir / "test_metrics.json").write_text(json.dumps(m, indent=2))
    return m


def write_ner_test(run_dir: Path, logits, label_ids, labels: Sequence[str], scheme: str,
                   examples: Sequence[dict] = (), limit: int = 1000) -> dict:
    """Entity-level test metrics (test_*, per type in test_metrics.json) and sentences with errors."""
    gold, pred = ner_tags_from_ids(_as_array(logits).argmax(-1), np.asarray(label_ids), labels)
    m = ner_metrics(gold, pred, scheme)
    per_type = m.pop("per_type")
    out = {f"test_{k}": v for k, v in m.items()}
    (run_dir / "test_metrics.json").write_text(json.dumps({**out, "per_type": per_type}, indent=2))
    rows = [{"text": " ".join(ex["tokens"]), "gold": g, "predicted": p, "confidence": None}
            for ex, g, p in zip(examples, gold, pred) if g != p]
    write_jsonl(run_dir / "errors.jsonl", rows[:limit])
    return out

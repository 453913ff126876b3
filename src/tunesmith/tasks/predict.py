"""Predict with a trained classify or ner run: batched, with probabilities.

`tunesmith predict RUN_DIR --text "..."` or `--input file.jsonl` (classify: a `text` field, or the
run's data.columns mapping; ner: `tokens`, or `text` split on whitespace / into characters).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from tunesmith.data.labels import LabelMap
from tunesmith.data.ner_align import word_predictions
from tunesmith.errors import DataError, ModelError
from tunesmith.eval.classify_metrics import sigmoid, softmax


def auto_class_for(task: str):
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

    return AutoModelForTokenClassification if task == "ner" else AutoModelForSequenceClassification


def load_labelled_model(model_cfg, task: str, label_kwargs: dict, tokenizer, resolved=None):
    """A classification/token-classification model with the label mapping in its config and a pad id
    (decoder models such as Llama need one to find each row's last token)."""
    from tunesmith.models import load_model

    model = load_model(model_cfg, auto_class=auto_class_for(task), resolved=resolved, **label_kwargs)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model


def save_labels(folder: Path, task: str, labels: Sequence[str], problem_type: str, scheme: str | None = None) -> None:
    data = {"task": task, "labels": list(labels), "problem_type": problem_type, "tag_scheme": scheme}
    (Path(folder) / "labels.json").write_text(json.dumps(data, indent=2, ensure_ascii=False))


class Predictor:
    """A trained run in eval mode: `classify(texts)` or `tag(token_lists)`."""

    def __init__(self, run_dir: str | Path):
        from transformers import AutoTokenizer

        from tunesmith.train import read_run_config, weights_dir

        self.run_dir = Path(run_dir)
        self.cfg = read_run_config(self.run_dir)
        wdir = weights_dir(self.run_dir)
        info_path = wdir / "labels.json"
        if not info_path.exists():
            raise ModelError(f"{wdir} has no labels.json; `predict` works on runs of task classify or ner")
        self.info = json.loads(info_path.read_text())
        self.task = self.info["task"]
        self.tokenizer = AutoTokenizer.from_pretrained(str(wdir))
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.tokenizer.padding_side = "right"
        self.label_map = LabelMap(self.info["labels"], self.info["problem_type"])
        kwargs = self.label_map.model_kwargs() if self.task == "classify" else {
            "num_labels": len(self.info["labels"]), "id2label": dict(enumerate(self.info["labels"])),
            "label2id": {t: i for i, t in enumerate(self.info["labels"])}}
        if wdir.name == "adapter":
            from peft import PeftModel

            base = load_labelled_model(self.cfg.model, self.task, kwargs, self.tokenizer)
            self.model = PeftModel.from_pretrained(base, str(wdir))
        else:
            from tunesmith.config.schema import ModelConfig

            mc = ModelConfig(**{**self.cfg.model.model_dump(), "name_or_path": str(wdir), "gguf_file": None})
            self.model = load_labelled_model(mc, self.task, {}, self.tokenizer)
        self.model.eval()
        section = self.cfg.classify if self.task == "classify" else self.cfg.ner
        self.max_length = section.max_length

    @torch.no_grad()
    def classify(self, texts: Sequence[str], pairs: Sequence[str] | None = None, batch_size: int = 32) -> list[dict]:
        """One dict per text: label (or labels / score) and per-label probabilities."""
        out = []
        for start in range(0, len(texts), batch_size):
            batch = list(texts[start:start + batch_size])
            pb = list(pairs[start:start + batch_size]) if pairs else None
            enc = self.tokenizer(batch, pb, truncation=True, max_length=self.max_length, padding=True,
                                 return_tensors="pt")
            logits = self.model(**enc).logits.float().numpy()
            out += self._decode(batch, logits)
        return out

    def _decode(self, texts, logits: np.ndarray) -> list[dict]:
        problem, labels = self.label_map.problem_type, self.label_map.labels
        rows = []
        if problem == "regression":
            return [{"text": t, "score": float(v)} for t, v in zip(texts, logits.reshape(-1))]
        probs = sigmoid(logits) if problem == "multi_label" else softmax(logits)
        for t, p in zip(texts, probs):
            row = {"text": t, "probabilities": {y: round(float(v), 6) for y, v in zip(labels, p)}}
            if problem == "multi_label":
                row["labels"] = [y for y, v in zip(labels, p) if v >= 0.5]
            else:
                row["label"], row["confidence"] = labels[int(p.argmax())], float(p.max())
            rows.append(row)
        return rows

    @torch.no_grad()
    def tag(self, sentences: Sequence[Sequence[str]], batch_size: int = 32) -> list[dict]:
        """One dict per sentence: tokens, tags and each tag's probability (first sub-token)."""
        labels, out = self.label_map.labels, []
        for start in range(0, len(sentences), batch_size):
            batch = [list(s) for s in sentences[start:start + batch_size]]
            enc = self.tokenizer(batch, is_split_into_words=True, truncation=True, max_length=self.max_length,
                                 padding=True, return_tensors="pt")
            probs = softmax(self.model(**{k: v for k, v in enc.items()}).logits.float().numpy())
            for i, tokens in enumerate(batch):
                wids = enc.word_ids(i)
                ids = word_predictions(wids, probs[i].argmax(-1))
                conf = word_predictions(wids, range(len(wids)))
                out.append({"tokens": tokens[:len(ids)], "tags": [labels[j] for j in ids],
                            "confidence": [round(float(probs[i][pos].max()), 6) for pos in conf]})
        return out

    def predict_records(self, rows: Iterable[dict], batch_size: int = 32) -> list[dict]:
        rows = list(rows)
        if self.task == "ner":
            return self.tag([_tokens_of(r, i) for i, r in enumerate(rows)], batch_size)
        cols = self.cfg.data.columns or {}
        key, pair_key = cols.get("text", "text"), cols.get("text_pair", "text_pair")
        texts = []
        for i, r in enumerate(rows):
            if key not in r and "text" not in r:
                raise DataError(f"input record {i}: no {key!r} field; fix: give each line a {key!r} field")
            texts.append(str(r.get(key, r.get("text"))))
        pairs = [str(r[pair_key]) for r in rows] if rows and all(pair_key in r for r in rows) else None
        return self.classify(texts, pairs, batch_size)


def _tokens_of(row: dict, i: int) -> list[str]:
    if isinstance(row.get("tokens"), list):
        return [str(t) for t in row["tokens"]]
    text = row.get("text")
    if not isinstance(text, str):
        raise DataError(f"input record {i}: give `tokens` (a list) or `text` (a string)")
    return split_words(text)


def split_words(text: str) -> list[str]:
    """Whitespace words; text with Chinese characters is tagged character by character (as CoNLL zh data is)."""
    if any("\u4e00" <= c <= "\u9fff" for c in text):
        return [c for c in text if not c.isspace()]
    return text.split()

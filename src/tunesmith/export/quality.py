"""How much an exported (quantised) model differs from the float model where it matters: on the
run's own held-out conversations, scored on the answer tokens only (teacher forcing).

A logit delta on two probe sentences says little (a constant shift of all logits changes nothing);
this reports what a user sees instead: held-out loss of each model and its delta, how often the
two pick the same next token, how often each picks the reference token, and the mean
KL(float || other) of the next-token distributions.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from tunesmith.data.render import IGNORE_INDEX, tokenize_conversation

HELD_OUT_FILES = ("test.jsonl", "validation.jsonl")


def held_out_conversations(run_dir: str | Path, limit: int = 16) -> tuple[list[dict], str | None]:
    """Up to ``limit`` ``{"messages": ...}`` rows of the run's saved held-out split, and its file
    (empty and None when the run saved none, or its rows are not conversations)."""
    for name in HELD_OUT_FILES:
        path = Path(run_dir) / "data" / name
        if path.exists():
            rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
            rows = [r for r in rows if isinstance(r.get("messages"), list)][:limit]
            return rows, (str(path) if rows else None)
    return [], None


def encode_held_out(tokenizer, rows: list[dict], chat_template: str | None = None,
                    max_length: int = 512) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(input_ids, labels) per row, rendered and labelled exactly as in training."""
    out = []
    for row in rows:
        ex = tokenize_conversation(tokenizer, row["messages"], max_length=max_length, chat_template=chat_template)
        out.append((torch.tensor([ex.input_ids]), torch.tensor([ex.labels])))
    return out


@torch.no_grad()
def _answer_logits(model, ids: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits that predict each answer token, and those tokens."""
    logits = model(input_ids=ids).logits.float()[0, :-1]
    target = labels[0, 1:]
    keep = target != IGNORE_INDEX
    return logits[keep], target[keep]


def held_out_delta(reference, other, examples: list[tuple[torch.Tensor, torch.Tensor]]) -> dict:
    """Answer-token loss, top-1 agreement, accuracy and KL of ``other`` against ``reference``."""
    nll_ref = nll_oth = kl = 0.0
    agree = right_ref = right_oth = n = 0
    for ids, labels in examples:
        ref_logits, target = _answer_logits(reference, ids, labels)
        oth_logits, _ = _answer_logits(other, ids, labels)
        if not len(target):
            continue
        ref_lp, oth_lp = ref_logits.log_softmax(-1), oth_logits.log_softmax(-1)
        nll_ref -= float(ref_lp.gather(1, target[:, None]).sum())
        nll_oth -= float(oth_lp.gather(1, target[:, None]).sum())
        kl += float((ref_lp.exp() * (ref_lp - oth_lp)).sum())
        ref_top, oth_top = ref_logits.argmax(-1), oth_logits.argmax(-1)
        agree += int((ref_top == oth_top).sum())
        right_ref += int((ref_top == target).sum())
        right_oth += int((oth_top == target).sum())
        n += len(target)
    if n == 0:
        return {"rows": len(examples), "answer_tokens": 0}
    return {
        "rows": len(examples), "answer_tokens": n,
        "loss_reference": nll_ref / n, "loss": nll_oth / n, "loss_delta": (nll_oth - nll_ref) / n,
        "top1_agreement": agree / n, "token_accuracy_reference": right_ref / n, "token_accuracy": right_oth / n,
        "mean_kl": kl / n,
    }

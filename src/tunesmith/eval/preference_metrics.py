"""Preference metrics on held-out pairs: log-probabilities, preference and reward accuracy, margins.

A pair is rendered text ``{"prompt", "chosen", "rejected"}`` (``train.preference_data.render_pair``).
The log-probability of a reply is the sum over its tokens of log p(token | prompt, earlier tokens),
tokenised as prompt + reply together with the reply starting where the prompt's own tokens stop
matching (as TRL does).

- ``preference_accuracy``: share of pairs where the model itself gives the chosen reply a higher
  log-probability than the rejected one (summed, or per token with ``per_token=True``). It needs
  no reference, so base model and trained policy are measured the same way.
- ``paired_change``: the same held-out pairs before and after training: how many flipped to the
  chosen reply and how many away from it, and the exact two-sided sign-test p-value of that
  difference (McNemar's exact test), so "clearly above the base" can be read off one number.
- ``reward_accuracy``: DPO's implicit reward ``beta * (log pi - log pi_ref)``; share of pairs
  where the chosen reward exceeds the rejected one, and the mean margin.
- ``flip_difficulty``: for the pairs the reference ranks the wrong way round, the DPO (sigmoid)
  loss each must be driven below before the policy itself ranks it right. The policy ranks a pair
  right when ``log pi(c) - log pi(r) > 0``, i.e. when its implicit-reward margin exceeds
  ``beta * (log pi_ref(r) - log pi_ref(c))``, i.e. when the pair's loss is under
  ``-log sigmoid(beta * |reference margin|)`` (Chen et al. 2024, "Preference learning algorithms do
  not learn preference rankings"). Next to the held-out loss actually reached, it says whether a
  run's policy could be expected to change its own ranking of those pairs at all.
"""

from __future__ import annotations

import contextlib
import statistics
from collections.abc import Sequence

import torch


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def _encode(tokenizer, prompt: str, reply: str, max_length: int) -> tuple[list[int], int]:
    """(ids of prompt + reply cut to max_length, index where the reply starts)."""
    p = tokenizer(prompt)["input_ids"]
    full = tokenizer(prompt + reply)["input_ids"]
    start = _common_prefix(p, full)
    return full[:max_length], start


@torch.no_grad()
def completion_logprobs(model, tokenizer, prompts: Sequence[str], replies: Sequence[str], *,
                        batch_size: int = 4, max_length: int = 1024) -> list[tuple[float, int]]:
    """(summed log-probability, number of tokens) of each reply given its prompt."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    out: list[tuple[float, int]] = []
    for i in range(0, len(prompts), batch_size):
        enc = [_encode(tokenizer, p, r, max_length) for p, r in zip(prompts[i:i + batch_size], replies[i:i + batch_size])]
        width = max(len(ids) for ids, _ in enc)
        ids = torch.full((len(enc), width), pad, dtype=torch.long)
        attn = torch.zeros_like(ids)
        mask = torch.zeros_like(ids, dtype=torch.bool)
        for j, (seq, start) in enumerate(enc):
            ids[j, :len(seq)] = torch.tensor(seq)
            attn[j, :len(seq)] = 1
            mask[j, start:len(seq)] = True
        logits = model(input_ids=ids.to(device), attention_mask=attn.to(device)).logits.float()
        logps = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, ids[:, 1:].to(device).unsqueeze(-1)).squeeze(-1)
        m = mask[:, 1:].to(device)
        sums = (logps * m).sum(-1)
        for s, n in zip(sums.tolist(), m.sum(-1).tolist()):
            out.append((s, int(n)))
    if was_training:
        model.train()
    return out


def reference_context(model):
    """The base model of an adapter model (adapter disabled); a no-op for a plain model."""
    from peft import PeftModel

    return model.disable_adapter() if isinstance(model, PeftModel) else contextlib.nullcontext()


def pair_logprobs(model, tokenizer, pairs: Sequence[dict], *, batch_size: int = 4, max_length: int = 1024,
                  reference: bool = False) -> dict[str, list]:
    """Chosen and rejected log-probabilities (sums and token counts) of each pair.
    ``reference=True`` scores with the adapter disabled (the reference of an adapter model)."""
    prompts = [p["prompt"] for p in pairs]
    with reference_context(model) if reference else contextlib.nullcontext():
        chosen = completion_logprobs(model, tokenizer, prompts, [p["chosen"] for p in pairs],
                                     batch_size=batch_size, max_length=max_length)
        rejected = completion_logprobs(model, tokenizer, prompts, [p["rejected"] for p in pairs],
                                       batch_size=batch_size, max_length=max_length)
    return {"chosen": [s for s, _ in chosen], "rejected": [s for s, _ in rejected],
            "chosen_tokens": [n for _, n in chosen], "rejected_tokens": [n for _, n in rejected]}


def _wins(chosen: Sequence[float], rejected: Sequence[float]) -> list[bool]:
    """Per pair: does the chosen reply score strictly higher (a tie is not a win)."""
    return [a > b for a, b in zip(chosen, rejected)]


def _mean(xs) -> float:
    xs = list(xs)
    return sum(xs) / len(xs) if xs else float("nan")


def accuracy_from_logprobs(lp: dict[str, list], *, per_token: bool = False) -> dict[str, float]:
    """Preference accuracy, mean margin and mean log-probabilities from ``pair_logprobs``."""
    c, r = lp["chosen"], lp["rejected"]
    if per_token:
        c = [s / max(n, 1) for s, n in zip(c, lp["chosen_tokens"])]
        r = [s / max(n, 1) for s, n in zip(r, lp["rejected_tokens"])]
    wins = [float(w) for w in _wins(c, r)]
    return {"accuracy": _mean(wins), "margin": _mean(a - b for a, b in zip(c, r)),
            "chosen_logps": _mean(c), "rejected_logps": _mean(r), "pairs": len(wins)}


def paired_change(before: dict[str, list], after: dict[str, list]) -> dict[str, float]:
    """Pairs that flipped between two ``pair_logprobs`` of the same pairs, with McNemar's exact
    p-value; ``before_median_abs_margin`` says how far a pair sits from flipping."""
    from scipy.stats import binomtest

    pairs = list(zip(_wins(before["chosen"], before["rejected"]), _wins(after["chosen"], after["rejected"])))
    to_chosen = sum(not b and a for b, a in pairs)
    to_rejected = sum(b and not a for b, a in pairs)
    flips = to_chosen + to_rejected
    margins = [abs(a - b) for a, b in zip(before["chosen"], before["rejected"])]
    return {"flipped_to_chosen": to_chosen, "flipped_to_rejected": to_rejected,
            "sign_test_p": float(binomtest(to_chosen, flips, 0.5).pvalue) if flips else 1.0,
            "before_median_abs_margin": statistics.median(margins) if margins else float("nan")}


def preference_accuracy(model, tokenizer, pairs: Sequence[dict], *, per_token: bool = False,
                        batch_size: int = 4, max_length: int = 1024) -> dict[str, float]:
    """Share of pairs where ``model`` gives the chosen reply a higher log-probability than the rejected."""
    lp = pair_logprobs(model, tokenizer, pairs, batch_size=batch_size, max_length=max_length)
    return accuracy_from_logprobs(lp, per_token=per_token)


def reward_accuracy(policy: dict[str, list], reference: dict[str, list], beta: float) -> dict[str, float]:
    """DPO implicit-reward accuracy and margin from policy and reference ``pair_logprobs``."""
    rc = [beta * (a - b) for a, b in zip(policy["chosen"], reference["chosen"])]
    rr = [beta * (a - b) for a, b in zip(policy["rejected"], reference["rejected"])]
    return {"reward_accuracy": _mean(float(w) for w in _wins(rc, rr)),
            "reward_margin": _mean(a - b for a, b in zip(rc, rr)),
            "chosen_reward": _mean(rc), "rejected_reward": _mean(rr)}


def flip_difficulty(policy: dict[str, list], reference: dict[str, list], beta: float) -> dict[str, float]:
    """Misranked-by-the-reference pairs: how many, the median DPO loss each must fall below to flip,
    and the DPO sigmoid loss the policy reaches on them and on all pairs (see the module docstring)."""
    rows = list(zip(policy["chosen"], policy["rejected"], reference["chosen"], reference["rejected"]))
    loss = [dpo_sigmoid_loss(pc, pr, rc, rr, beta) for pc, pr, rc, rr in rows]
    wrong = [i for i, right in enumerate(_wins(reference["chosen"], reference["rejected"])) if not right]
    needed = [_neg_logsigmoid(beta * (rows[i][3] - rows[i][2])) for i in wrong]
    return {"sigmoid_loss": _mean(loss), "reference_misranked": len(wrong),
            "misranked_sigmoid_loss": _mean(loss[i] for i in wrong),
            "flip_loss_needed_median": statistics.median(needed) if needed else float("nan")}


def _neg_logsigmoid(z: float) -> float:
    return float(-torch.nn.functional.logsigmoid(torch.tensor(z, dtype=torch.float64)))


def dpo_sigmoid_loss(policy_chosen: float, policy_rejected: float, ref_chosen: float, ref_rejected: float,
                     beta: float) -> float:
    """The DPO loss of one pair: -log sigmoid(beta * ((pc - rc) - (pr - rr)))."""
    return _neg_logsigmoid(beta * ((policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)))


@torch.no_grad()
def reward_model_accuracy(model, tokenizer, pairs: Sequence[dict], *, batch_size: int = 4,
                          max_length: int = 1024) -> dict[str, float]:
    """A scalar-head reward model: share of pairs scoring chosen above rejected, and the mean margin."""
    model.eval()
    device = next(model.parameters()).device

    def scores(texts):
        out = []
        for i in range(0, len(texts), batch_size):
            enc = tokenizer(texts[i:i + batch_size], padding=True, truncation=True, max_length=max_length,
                            return_tensors="pt").to(device)
            out += model(**enc).logits[:, 0].float().tolist()
        return out

    c = scores([p["prompt"] + p["chosen"] for p in pairs])
    r = scores([p["prompt"] + p["rejected"] for p in pairs])
    return {"accuracy": _mean(float(a > b) for a, b in zip(c, r)), "margin": _mean(a - b for a, b in zip(c, r)),
            "pairs": len(c)}

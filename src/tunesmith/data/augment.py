"""Train-only text augmentation: random deletion, random swap, synonym replacement, back-translation.

Words are whitespace tokens for Latin text and jieba words for Chinese (detected per text).
`augment_examples` returns new examples tagged `"_augmented": "<op>"` so evaluation can exclude
them. Back-translation calls a user-supplied `translate(texts, src, tgt) -> list[str]`, so any
model tunesmith can load (a seq2seq translator, or an instruct LLM prompted to translate) plugs in:

    def translate(texts, src, tgt):
        return [pipe(f"Translate from {src} to {tgt}: {t}")[0]["generated_text"] for t in texts]
"""

from __future__ import annotations

import json
import random
import re
from importlib import resources
from pathlib import Path
from typing import Callable

from tunesmith.data.clean import map_texts

Translate = Callable[[list[str], str, str], list[str]]
_RE_CJK = re.compile(r"[\u4e00-\u9fff]")


def load_synonyms(path: str | Path | None = None) -> dict[str, list[str]]:
    """The built-in English/Chinese synonym dictionary, with a user JSON file {word: [synonyms]} merged over it."""
    text = resources.files("tunesmith.data").joinpath("resources/synonyms.json").read_text(encoding="utf-8")
    table = {k: v for k, v in json.loads(text).items() if not k.startswith("_")}
    if path is not None:
        user = json.loads(Path(path).read_text(encoding="utf-8"))
        if not isinstance(user, dict) or not all(isinstance(v, list) for v in user.values()):
            raise ValueError(f"{path}: expected a JSON object mapping each word to a list of synonyms")
        table.update(user)
    return table


def _words(text: str) -> tuple[list[str], str]:
    if _RE_CJK.search(text):
        import jieba

        return [w for w in jieba.lcut(text)], ""
    return text.split(" "), " "


def random_deletion(text: str, p: float, rng: random.Random) -> str:
    """Delete each word with probability p (at least one word is kept)."""
    words, sep = _words(text)
    if len(words) < 2:
        return text
    kept = [w for w in words if rng.random() >= p or not w.strip()]
    if not any(w.strip() for w in kept):
        kept = [rng.choice(words)]
    return sep.join(kept)


def random_swap(text: str, n: int, rng: random.Random) -> str:
    """Swap n random pairs of words."""
    words, sep = _words(text)
    idx = [i for i, w in enumerate(words) if w.strip()]
    if len(idx) < 2:
        return text
    for _ in range(n):
        i, j = rng.sample(idx, 2)
        words[i], words[j] = words[j], words[i]
    return sep.join(words)


_RE_WORD_PARTS = re.compile(r"^(\W*)(.*?)(\W*)$", re.S)


def synonym_replace(text: str, p: float, table: dict[str, list[str]], rng: random.Random) -> str:
    """Replace words found in `table` by a random synonym with probability p (capitalisation and punctuation kept)."""
    words, sep = _words(text)
    out = []
    for w in words:
        pre, core, post = _RE_WORD_PARTS.match(w).groups() if sep else ("", w, "")
        syns = table.get(core.lower())
        if syns and rng.random() < p:
            new = rng.choice(syns)
            if core[:1].isupper():
                new = new[:1].upper() + new[1:]
            w = pre + new + post
        out.append(w)
    return sep.join(out)


def augment_examples(examples: list[dict], ops: list, *, fraction: float = 0.2, fields: str = "input",
                     seed: int = 42, translate: Translate | None = None) -> list[dict]:
    """New examples made from `examples` by each op in turn (about `fraction` per source row per op).

    Each new example is a copy with its texts changed and `_augmented` set to the op name; rows
    whose text did not change are not returned. NER examples are skipped (tags would misalign).
    """
    rng = random.Random(seed)
    roles = None if fields == "all" else {"user", "system"}
    pool = [ex for ex in examples if "tokens" not in ex]
    out: list[dict] = []
    for op in ops:
        chosen = _choose(pool, fraction, rng)
        if op.op == "back_translation":
            out += _back_translate(chosen, op, roles, translate)
            continue
        table = load_synonyms(op.dictionary) if op.op == "synonym" else None
        for ex in chosen:
            if op.op == "deletion":
                fn = lambda t: random_deletion(t, op.p, rng)  # noqa: E731
            elif op.op == "swap":
                fn = lambda t: random_swap(t, op.n, rng)  # noqa: E731
            else:
                fn = lambda t: synonym_replace(t, op.p, table, rng)  # noqa: E731
            new = map_texts(ex, fn, roles=roles)
            if new != ex:
                new["_augmented"] = op.op
                out.append(new)
    return out


def _choose(pool: list[dict], fraction: float, rng: random.Random) -> list[dict]:
    whole, part = divmod(fraction, 1)
    chosen = pool * int(whole)
    chosen += rng.sample(pool, min(len(pool), round(part * len(pool))))
    return chosen


def _back_translate(chosen: list[dict], op, roles, translate: Translate | None) -> list[dict]:
    if translate is None:
        raise ValueError(
            "augment op back_translation needs a translate(texts, src, tgt) callable: pass "
            "run_prepare(..., translate=fn) (any loaded model can back it), or remove the op"
        )
    texts: list[str] = []
    for ex in chosen:
        map_texts(ex, lambda t: texts.append(t) or t, roles=roles)
    if not texts:
        return []
    pivot = translate(texts, op.source, op.pivot)
    back = translate(list(pivot), op.pivot, op.source)
    if len(back) != len(texts):
        raise ValueError(f"translate returned {len(back)} texts for {len(texts)}; it must return one per input")
    it = iter(back)
    out = []
    for ex in chosen:
        new = map_texts(ex, lambda t: next(it), roles=roles)
        if new != ex:
            new["_augmented"] = "back_translation"
            out.append(new)
    return out

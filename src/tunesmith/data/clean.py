"""Cleaning steps over canonical examples, applied in the configured order.

Text functions (`strip_html`, `normalize_whitespace`, ...) work on one string. `map_texts` applies
one to every text field of a canonical example whatever its format (messages, preference,
classification, NER tokens); `apply_cleaning` runs the ordered step list over a list of examples
and returns the kept examples plus `(position, reason)` for every removed one.
"""

from __future__ import annotations

import html
import re
import unicodedata
from typing import Callable, Iterable

# ----------------------------------------------------------------------------- example access
_MESSAGE_LISTS = ("messages", "prompt", "chosen", "rejected")


def map_texts(ex: dict, fn: Callable[[str], str], *, roles: Iterable[str] | None = None) -> dict:
    """A copy of `ex` with `fn` applied to every text field (message contents, text, text_pair, tokens).

    `roles` limits message lists to those roles (e.g. {"user"} for augmentation); labels, tags and
    private `_` keys are never touched.
    """
    out = dict(ex)
    roles = set(roles) if roles is not None else None
    for key in _MESSAGE_LISTS:
        val = ex.get(key)
        if isinstance(val, list):
            out[key] = [
                {**m, "content": fn(m["content"])}
                if isinstance(m, dict) and isinstance(m.get("content"), str) and (roles is None or m.get("role") in roles)
                else m
                for m in val
            ]
        elif isinstance(val, str):
            out[key] = fn(val)
    for key in ("text", "text_pair"):
        if isinstance(ex.get(key), str):
            out[key] = fn(ex[key])
    if isinstance(ex.get("tokens"), list) and roles is None:
        out["tokens"] = [fn(t) if isinstance(t, str) else t for t in ex["tokens"]]
    return out


def iter_texts(ex: dict) -> Iterable[str]:
    """Every text field of a canonical example, in order."""
    for key in _MESSAGE_LISTS:
        val = ex.get(key)
        if isinstance(val, list):
            for m in val:
                if isinstance(m, dict) and isinstance(m.get("content"), str):
                    yield m["content"]
        elif isinstance(val, str):
            yield val
    for key in ("text", "text_pair"):
        if isinstance(ex.get(key), str):
            yield ex[key]
    if isinstance(ex.get("tokens"), list):
        yield " ".join(t for t in ex["tokens"] if isinstance(t, str))


def example_text(ex: dict) -> str:
    """All text of an example joined by newlines: what lengths, dedup and token counts measure."""
    return "\n".join(iter_texts(ex))


def empty_field(ex: dict) -> str | None:
    """Name of the first text field left empty (e.g. by cleaning), or None."""
    for key in _MESSAGE_LISTS:
        val = ex.get(key)
        if isinstance(val, list):
            for i, m in enumerate(val):
                if isinstance(m, dict) and isinstance(m.get("content"), str) and not m["content"].strip():
                    if m.get("role") != "system":
                        return f"{key}[{i}].content"
        elif isinstance(val, str) and not val.strip():
            return key
    if isinstance(ex.get("text"), str) and not ex["text"].strip():
        return "text"
    if isinstance(ex.get("tokens"), list) and not ex["tokens"]:
        return "tokens"
    return None


# ----------------------------------------------------------------------------- text functions
_HTML_TAGS = (
    "a|abbr|address|article|aside|b|bdi|bdo|big|blockquote|body|br|button|caption|center|cite|code|col|"
    "colgroup|dd|del|details|dfn|div|dl|dt|em|figcaption|figure|font|footer|form|h[1-6]|head|header|hr|html|"
    "i|iframe|img|input|ins|kbd|label|legend|li|link|main|mark|meta|nav|ol|option|p|pre|q|s|samp|section|"
    "select|small|span|strike|strong|sub|summary|sup|table|tbody|td|textarea|tfoot|th|thead|title|tr|tt|u|ul|"
    "var|wbr"
)
_RE_SCRIPT = re.compile(r"<(script|style)\b[^>]*>.*?</\1\s*>", re.I | re.S)
_RE_COMMENT = re.compile(r"<!--.*?-->", re.S)
_RE_KNOWN_TAG = re.compile(rf"</?(?:{_HTML_TAGS})\b(?:\s[^<>]*)?/?>", re.I)
_RE_ANY_TAG = re.compile(r"</?[A-Za-z][^<>]*>")
_RE_BLOCK_TAG = re.compile(r"<(?:br|/p|/div|/li|/tr|/h[1-6])\b[^<>]*>", re.I)


def strip_html(text: str, all_tags: bool = False) -> str:
    """Remove HTML comments, script/style blocks and tags (line-breaking tags become newlines); decode entities."""
    if "<" in text:
        text = _RE_SCRIPT.sub("", text)
        text = _RE_COMMENT.sub("", text)
        text = _RE_BLOCK_TAG.sub("\n", text)
        text = (_RE_ANY_TAG if all_tags else _RE_KNOWN_TAG).sub("", text)
    if "&" in text:
        text = html.unescape(text)
    return text


_UNICODE_SPACES = dict.fromkeys(map(ord, "\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u202f\u205f\u3000\x0b\x0c"), " ")
_RE_TRAILING = re.compile(r"[ \t]+(?=\n|$)")
_RE_INNER_SPACES = re.compile(r"(?<=\S)[ \t]{2,}")


def normalize_whitespace(text: str, collapse_spaces: bool = True, max_blank_lines: int = 1) -> str:
    """CRLF/CR to LF, Unicode spaces to ' ', trailing spaces removed, blank lines capped, ends trimmed."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.isascii() or "\x0b" in text or "\x0c" in text:
        text = text.translate(_UNICODE_SPACES)
    tabs = "\t" in text
    if tabs or " \n" in text or text.endswith(" "):
        text = _RE_TRAILING.sub("", text)
    if collapse_spaces and (tabs or "  " in text):
        text = _RE_INNER_SPACES.sub(" ", text)
    if "\n" * (max_blank_lines + 2) in text:
        text = re.sub(r"\n{%d,}" % (max_blank_lines + 2), "\n" * (max_blank_lines + 1), text)
    return text.strip()


# Chinese punctuation in the full-width block, which NFKC and a plain width conversion would turn into ASCII.
CJK_PUNCT = "！（），：；？～［］｛｝"
_RE_NOT_CJK_PUNCT = re.compile(f"[^{CJK_PUNCT}]+")


def nfkc(text: str, keep_cjk_punctuation: bool = True) -> str:
    """Unicode NFKC; Chinese full-width punctuation is kept unless `keep_cjk_punctuation` is False."""
    if text.isascii():
        return text
    if not keep_cjk_punctuation:
        return unicodedata.normalize("NFKC", text)
    return _RE_NOT_CJK_PUNCT.sub(lambda m: unicodedata.normalize("NFKC", m.group()), text)


_FULL_TO_HALF = {0xFF01 + i: 0x21 + i for i in range(94)}
_FULL_TO_HALF[0x3000] = 0x20
_FULL_TO_HALF_KEEP = {k: v for k, v in _FULL_TO_HALF.items() if chr(k) not in CJK_PUNCT}
_HALF_TO_FULL = {v: k for k, v in _FULL_TO_HALF.items()}


def convert_width(text: str, mode: str = "half_keep_cjk_punct") -> str:
    """Full-width <-> half-width. Modes: half, half_keep_cjk_punct (Chinese punctuation kept), full."""
    if mode == "full":
        return text.translate(_HALF_TO_FULL)
    if text.isascii():
        return text
    return text.translate(_FULL_TO_HALF if mode == "half" else _FULL_TO_HALF_KEEP)


_RE_CONTROL = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff\ufff9-\ufffb]"
)


def remove_control(text: str) -> str:
    """Drop control and invisible format characters (BOM, zero-width space, bidi marks); keep \\n and \\t."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if text.isascii() and text.replace("\n", "").replace("\t", "").isprintable():
        return text  # fast path: printable ASCII holds no control characters
    return _RE_CONTROL.sub("", text)


# ----------------------------------------------------------------------------- the step runner
def _text_step(step) -> Callable[[str], str] | None:
    kind = step.step
    if kind == "html":
        return lambda t: strip_html(t, step.all_tags)
    if kind == "whitespace":
        return lambda t: normalize_whitespace(t, step.collapse_spaces, step.max_blank_lines)
    if kind == "nfkc":
        return lambda t: nfkc(t, step.keep_cjk_punctuation)
    if kind == "width":
        return lambda t: convert_width(t, step.mode)
    if kind == "control":
        return remove_control
    if kind == "regex" and step.action == "replace":
        rx = re.compile(step.pattern, re.I if step.ignore_case else 0)
        return lambda t: rx.sub(step.replacement, t)
    return None


def _drop_empty_tokens(ex: dict) -> dict:
    if isinstance(ex.get("tokens"), list) and isinstance(ex.get("tags"), list) and any(not t for t in ex["tokens"]):
        pairs = [(t, g) for t, g in zip(ex["tokens"], ex["tags"]) if t]
        ex = {**ex, "tokens": [p[0] for p in pairs], "tags": [p[1] for p in pairs]}
    return ex


def apply_cleaning(
    examples: list[dict], steps: list, *, token_counter=None
) -> tuple[list[dict], list[tuple[int, str, str]], dict[str, dict]]:
    """Run `steps` in order over `examples`.

    Returns (kept, removed, stats): `removed` holds (original position, reason, detail) for every
    dropped example; `stats[step_name]` has `changed` (examples altered) and `removed` counts.
    `token_counter` (a `TokenCounter`) is needed only for token limits in a `length` step.
    """
    positions = list(range(len(examples)))
    current = list(examples)
    removed: list[tuple[int, str, str]] = []
    stats: dict[str, dict] = {}
    for n, step in enumerate(steps):
        name = f"{n + 1}:{step.step}" + (f":{step.name}" if step.step == "regex" else "")
        st = stats[name] = {"changed": 0, "removed": 0}
        fn = _text_step(step)
        keep_pos, keep_ex = [], []
        if fn is not None:
            for pos, ex in zip(positions, current):
                new = _drop_empty_tokens(map_texts(ex, fn))
                if new != ex:
                    st["changed"] += 1
                field = empty_field(new)
                if field is not None:
                    removed.append((pos, "empty_after_cleaning", f"{field} empty after step {step.step}"))
                    st["removed"] += 1
                    continue
                keep_pos.append(pos)
                keep_ex.append(new)
        elif step.step == "regex":
            rx = re.compile(step.pattern, re.I if step.ignore_case else 0)
            want = step.action == "keep"
            for pos, ex in zip(positions, current):
                hit = any(rx.search(t) for t in iter_texts(ex))
                if hit == want:
                    keep_pos.append(pos)
                    keep_ex.append(ex)
                else:
                    why = "matches" if hit else "does not match"
                    removed.append((pos, f"regex:{step.name}", f"text {why} {step.pattern!r}"))
                    st["removed"] += 1
        else:  # length
            texts = [example_text(ex) for ex in current]
            ntok = None
            if (step.min_tokens is not None or step.max_tokens is not None) and token_counter is not None:
                ntok = token_counter.count(texts)
            for i, (pos, ex) in enumerate(zip(positions, current)):
                reason = _length_reason(step, len(texts[i]), None if ntok is None else int(ntok[i]))
                if reason:
                    removed.append((pos, reason[0], reason[1]))
                    st["removed"] += 1
                else:
                    keep_pos.append(pos)
                    keep_ex.append(ex)
            if ntok is None and (step.min_tokens is not None or step.max_tokens is not None):
                st["note"] = "token limits skipped: no tokenizer given"
        positions, current = keep_pos, keep_ex
    return current, removed, stats


def _length_reason(step, nchars: int, ntok: int | None) -> tuple[str, str] | None:
    if step.min_chars is not None and nchars < step.min_chars:
        return "too_short_chars", f"{nchars} chars < min_chars {step.min_chars}"
    if step.max_chars is not None and nchars > step.max_chars:
        return "too_long_chars", f"{nchars} chars > max_chars {step.max_chars}"
    if ntok is not None and step.min_tokens is not None and ntok < step.min_tokens:
        return "too_short_tokens", f"{ntok} tokens < min_tokens {step.min_tokens}"
    if ntok is not None and step.max_tokens is not None and ntok > step.max_tokens:
        return "too_long_tokens", f"{ntok} tokens > max_tokens {step.max_tokens}"
    return None


class TokenCounter:
    """Token counts with a fast tokenizer, batched, memoised by text so later steps reuse them."""

    def __init__(self, tokenizer, batch_size: int = 2048):
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self._cache: dict[str, int] = {}

    def count(self, texts: list[str]) -> list[int]:
        todo = list(dict.fromkeys(t for t in texts if t not in self._cache))
        for i in range(0, len(todo), self.batch_size):
            chunk = todo[i : i + self.batch_size]
            enc = self.tokenizer(chunk, add_special_tokens=False, return_attention_mask=False, return_token_type_ids=False)
            for t, ids in zip(chunk, enc["input_ids"]):
                self._cache[t] = len(ids)
        return [self._cache[t] for t in texts]

"""PII masking: e-mail, phone, Chinese resident ID (checksum), bank card (Luhn), IP, person names.

`PiiMasker(types).mask(text)` returns the masked text and counts per type. Numbers that look like
an ID or a card but fail their checksum are left alone: masking them would hide ordinary numbers
(order ids, amounts) and teach nothing. Chinese names come from jieba's POS tags (`nr`), English
names from a list of first names (built-in or user-given) matched as capitalised words.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from datetime import date
from importlib import resources
from pathlib import Path

PII_TYPES = ("email", "phone", "id_card", "bank_card", "ip", "name_zh", "name_en")
_LABEL = {"email": "EMAIL", "phone": "PHONE", "id_card": "ID_CARD", "bank_card": "BANK_CARD", "ip": "IP",
          "name_zh": "NAME", "name_en": "NAME"}

_RE_EMAIL = re.compile(r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(?![A-Za-z0-9-])")
_RE_ID = re.compile(r"(?<![0-9A-Za-z])\d{17}[0-9Xx](?![0-9A-Za-z])")
_RE_CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
_RE_PHONE_CN = re.compile(r"(?<![\d+])(?:(?:\+|00)86[ -]?)?1[3-9]\d(?:[ -]?\d{4}){2}(?!\d)")
_RE_PHONE_INTL = re.compile(r"(?<![A-Za-z0-9+])(?:\+|00)[1-9]\d{0,2}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]?\d{2,5}){1,4}(?!\d)")
_RE_PHONE_NANP = re.compile(r"(?<![\d(])(?:\(\d{3}\) ?|\d{3}[-.])\d{3}[-.]\d{4}(?!\d)")
_RE_IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.]*\d)")
_RE_IPV6 = re.compile(r"(?<![A-Za-z0-9:])(?:[0-9A-Fa-f]{1,4}:){2,7}[0-9A-Fa-f]{0,4}(?:(?::[0-9A-Fa-f]{1,4})*)?(?![A-Za-z0-9:])")
_RE_CJK = re.compile(r"[\u4e00-\u9fff]")
_RE_DIGIT_RUN = re.compile(r"\d[\d ()+.-]{5,}\d")  # every number-like PII type needs one; cheap gate

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


def valid_cn_id(number: str) -> bool:
    """True for an 18-character Chinese resident ID with a valid birth date and ISO 7064 checksum."""
    if len(number) != 18 or not number[:17].isdigit():
        return False
    try:
        born = date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        return False
    if not 1900 <= born.year <= date.today().year:
        return False
    total = sum(int(d) * w for d, w in zip(number[:17], _ID_WEIGHTS))
    return _ID_CHECK[total % 11] == number[17].upper()


def luhn_ok(digits: str) -> bool:
    """Luhn checksum of a digit string (spaces and dashes ignored)."""
    ds = [int(c) for c in digits if c.isdigit()]
    if not 13 <= len(ds) <= 19:
        return False
    total = 0
    for i, d in enumerate(reversed(ds)):
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _valid_ip(s: str) -> bool:
    try:
        ipaddress.ip_address(s)
        return True
    except ValueError:
        return False


def load_names(path: str | Path | None = None) -> set[str]:
    """English first names, one a line: the user's file, or the built-in list."""
    if path is not None:
        text = Path(path).read_text(encoding="utf-8")
    else:
        text = resources.files("tunesmith.data").joinpath("resources/en_first_names.txt").read_text(encoding="utf-8")
    return {w.strip() for w in text.splitlines() if w.strip() and not w.startswith("#")}


class PiiMasker:
    """Masks the configured PII types with typed placeholders and counts what it masked."""

    def __init__(self, types=("email", "phone", "id_card", "bank_card", "ip"), placeholder: str = "[{type}]",
                 names: set[str] | None = None):
        unknown = set(types) - set(PII_TYPES)
        if unknown:
            raise ValueError(f"unknown PII types {sorted(unknown)}; choose from {list(PII_TYPES)}")
        self.types = list(types)
        self.placeholder = placeholder
        self.counts: Counter = Counter()
        self._names = names if names is not None else (load_names() if "name_en" in types else set())
        self._re_name = re.compile(r"(?<![A-Za-z])([A-Z][a-z]+)(?:\s+(?:[A-Z]\.\s*)?([A-Z][a-z]+))?(?![A-Za-z])")

    def _ph(self, kind: str) -> str:
        return self.placeholder.format(type=_LABEL[kind])

    def _sub(self, rx, kind, text, check=None) -> str:
        def repl(m):
            if check is not None and not check(m.group()):
                return m.group()
            self.counts[kind] += 1
            return self._ph(kind)
        return rx.sub(repl, text)

    def mask(self, text: str) -> str:
        """The text with every PII match of the configured types replaced; `self.counts` is updated."""
        t = self.types
        digits = _RE_DIGIT_RUN.search(text) is not None
        if "email" in t and "@" in text:
            text = self._sub(_RE_EMAIL, "email", text)
        if digits:
            if "id_card" in t:
                text = self._sub(_RE_ID, "id_card", text, valid_cn_id)
            if "bank_card" in t:
                text = self._sub(_RE_CARD, "bank_card", text, luhn_ok)
            if "phone" in t:
                text = self._sub(_RE_PHONE_CN, "phone", text)
                text = self._sub(_RE_PHONE_INTL, "phone", text)
                text = self._sub(_RE_PHONE_NANP, "phone", text)
            if "ip" in t and "." in text:
                text = self._sub(_RE_IPV4, "ip", text, _valid_ip)
        if "ip" in t and ("::" in text or text.count(":") >= 7):
            text = self._sub(_RE_IPV6, "ip", text, _valid_ip)
        if "name_en" in t and self._names:
            text = self._mask_en_names(text)
        if "name_zh" in t and _RE_CJK.search(text):
            text = self._mask_zh_names(text)
        return text

    def _mask_en_names(self, text: str) -> str:
        def repl(m):
            if m.group(1) not in self._names:
                return m.group()
            self.counts["name_en"] += 1
            return self._ph("name_en")
        return self._re_name.sub(repl, text)

    def _mask_zh_names(self, text: str) -> str:
        import jieba.posseg as pseg

        out = []
        for word, flag in pseg.cut(text):
            if flag in ("nr", "nrfg") and len(word) >= 2 and _RE_CJK.match(word):
                self.counts["name_zh"] += 1
                out.append(self._ph("name_zh"))
            else:
                out.append(word)
        return "".join(out)

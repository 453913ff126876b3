"""Read data files into located records: json, jsonl, csv, tsv, parquet and CoNLL.

Every record keeps where it came from (file, 1-based line, 0-based index) so that any later
problem can be reported as ``file:line``. A record that cannot be parsed (a JSONL line cut in
half, bytes that are not UTF-8, a CSV row with the wrong number of fields) is not dropped and
does not stop the read: it comes out as a ``Record`` with ``error`` set and ``data=None``, and
the caller turns it into a quarantined reject.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tunesmith.errors import DataError

FORMATS = ("json", "jsonl", "csv", "tsv", "parquet", "conll")
_EXTENSIONS = {
    ".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".tsv": "tsv",
    ".parquet": "parquet", ".pq": "parquet", ".conll": "conll", ".bio": "conll", ".iob": "conll",
}
_WS = re.compile(r"[ \t\r\n]*")
_BAD_BYTES = re.compile("[\udc80-\udcff]")  # what surrogateescape makes of non-UTF-8 bytes
_RAW_LIMIT = 500  # characters of an unparseable line kept for the quarantine file


@dataclass
class Record:
    """One raw record and its location; ``error`` is set (and ``data`` None) when unparseable."""

    data: dict | None
    file: str
    line: int | None
    index: int
    error: str | None = None
    raw: str | None = None  # the unparseable text (shortened), kept for the quarantine file

    def where(self) -> str:
        """``"path:line"`` when the line is known, else ``"path#record N"``."""
        if self.line is not None:
            return f"{self.file}:{self.line}"
        return f"{self.file}#record {self.index}"


def detect_format(path: str | Path) -> str:
    """The reader format implied by the file extension, or a DataError naming the choices."""
    suffix = Path(path).suffix.lower()
    if suffix in _EXTENSIONS:
        return _EXTENSIONS[suffix]
    if suffix == ".txt" and _looks_like_conll(Path(path)):
        return "conll"
    raise DataError(
        f"{path}: cannot tell the data format from the extension '{suffix or '(none)'}'; "
        f"expected one of {', '.join(sorted(_EXTENSIONS))}. Fix: rename the file or pass the "
        f"format explicitly (one of {', '.join(FORMATS)})."
    )


_TAG = re.compile(r"^(O|[BIESLU]-\S+|-X-)$")


def _looks_like_conll(p: Path) -> bool:
    """A .txt file whose first 50 non-blank lines are ``-DOCSTART-`` or ``token ... TAG`` (BIO)."""
    try:
        with open(p, encoding="utf-8", errors="replace") as f:
            lines = [ln.split() for ln in (f.readline() for _ in range(200)) if ln.strip()][:50]
    except OSError:
        return False
    return bool(lines) and all(
        cols[0] == "-DOCSTART-" or (len(cols) >= 2 and _TAG.match(cols[-1])) for cols in lines)


def read_records(path: str | Path, *, fmt: str | None = None) -> Iterator[Record]:
    """Yield the records of one file; ``fmt`` overrides the format guessed from the extension."""
    fmt = fmt.lower() if fmt else detect_format(path)
    if fmt not in FORMATS:
        raise DataError(f"{path}: unknown data format '{fmt}'; choose one of {', '.join(FORMATS)}.")
    p = Path(path)
    if not p.is_file():
        what = "is a directory, not a file" if p.is_dir() else "does not exist"
        raise DataError(f"data file {p} {what}. Fix: check the path in the data section of the config.")
    if fmt == "parquet":
        yield from _read_parquet(p)
        return
    text = _decode(p)
    if fmt == "tsv":
        yield from _read_tsv(text, str(p))
    elif fmt == "csv":
        yield from _read_csv(text, str(p))
    elif fmt == "conll":
        yield from _read_conll_text(text, str(p))
    else:  # json and jsonl: the content decides, since .json files often hold JSONL
        yield from _read_json_text(text, str(p))


def read_conll(path: str | Path) -> Iterator[Record]:
    """Yield one record per sentence of a CoNLL file: ``{"tokens": [...], "tags": [...]}``."""
    return read_records(path, fmt="conll")


def read_all(paths: str | Path | Iterable[str | Path], *, fmt: str | None = None) -> list[Record]:
    """All records of one or more files, in order (indexes restart at 0 for each file)."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    return [rec for p in paths for rec in read_records(p, fmt=fmt)]


def fingerprint_files(paths: str | Path | Iterable[str | Path]) -> str:
    """A short sha256 hex over each file's name and bytes, to record which data a run saw."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    h = hashlib.sha256()
    for p in paths:
        p = Path(p)
        h.update(p.name.encode() + b"\0")
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        h.update(b"\0")
    return h.hexdigest()[:16]


def _decode(p: Path) -> str:
    # surrogateescape keeps bad bytes as lone surrogates so they are reported per line later
    text = p.read_bytes().decode("utf-8", errors="surrogateescape")
    return text[1:] if text.startswith("\ufeff") else text


def _bad_bytes_error(file: str, line: int | None, index: int, raw: str) -> Record | None:
    m = _BAD_BYTES.search(raw)
    if not m:
        return None
    byte = ord(m.group()) - 0xDC00
    return Record(None, file, line, index, raw=_shorten(raw),
                  error=f"bytes that are not valid UTF-8 at column {m.start() + 1} (byte 0x{byte:02x}); "
                        "fix: re-save the file as UTF-8")


def _shorten(raw: str) -> str:
    raw = raw.encode("utf-8", errors="backslashreplace").decode("utf-8")
    return raw if len(raw) <= _RAW_LIMIT else raw[:_RAW_LIMIT] + "..."


def _read_json_text(text: str, file: str) -> Iterator[Record]:
    start = _WS.match(text).end()
    if text.startswith("[", start):
        yield from _read_json_list(text, start, file)
        return
    nl = text.find("\n", start)
    first_line = text[start:] if nl < 0 else text[start:nl]
    if text.startswith("{", start) and not _parses(first_line):
        # a single (pretty-printed) object rather than one object per line
        try:
            obj = json.loads(text)
        except json.JSONDecodeError:
            pass
        else:
            yield Record(obj, file, text.count("\n", 0, start) + 1, 0)
            return
    yield from _read_jsonl(text, file)


def _parses(s: str) -> bool:
    try:
        json.loads(s)
    except json.JSONDecodeError:
        return False
    return True


def _read_jsonl(text: str, file: str) -> Iterator[Record]:
    index = 0
    for lineno, raw in enumerate(text.split("\n"), start=1):
        line = raw.strip()
        if not line:
            continue
        bad = _bad_bytes_error(file, lineno, index, raw)
        if bad:
            yield bad
        else:
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                cut = e.msg.startswith("Unterminated string") or e.pos >= len(line) - 1
                hint = ("the line ends before the JSON value is complete: it looks cut off or split "
                        "over several lines; fix: put each record whole on one line"
                        if cut else "fix: correct the JSON on this line")
                at = "" if e.msg.endswith(" at") else " at"
                where = f"{e.msg}{at} column {e.colno}"
                yield Record(None, file, lineno, index, raw=_shorten(line),
                             error=f"invalid JSON: {where}; {hint}")
            else:
                yield _object_record(obj, file, lineno, index, line)
        index += 1


def _object_record(obj, file: str, line: int | None, index: int, raw: str) -> Record:
    if isinstance(obj, dict):
        return Record(obj, file, line, index)
    return Record(None, file, line, index, raw=_shorten(raw),
                  error=f"expected a JSON object ({{...}}) per record, found {type(obj).__name__}; "
                        "fix: wrap the value in an object with named fields")


def _read_json_list(text: str, start: int, file: str) -> Iterator[Record]:
    decoder = json.JSONDecoder()
    pos = _WS.match(text, start + 1).end()
    line, counted, index = 1, 0, 0
    if text.startswith("]", pos):
        return
    while True:
        line += text.count("\n", counted, pos)
        counted = pos
        try:
            obj, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            yield Record(None, file, e.lineno, index, raw=_shorten(text[pos:pos + _RAW_LIMIT]),
                         error=f"invalid JSON at line {e.lineno} column {e.colno}: {e.msg}; the rest of "
                               "this JSON list could not be read; fix: correct the JSON there")
            return
        raw = text[pos:end]
        yield _bad_bytes_error(file, line, index, raw) or _object_record(obj, file, line, index, raw)
        index += 1
        pos = _WS.match(text, end).end()
        if text.startswith(",", pos):
            pos = _WS.match(text, pos + 1).end()
        elif text.startswith("]", pos):
            return
        else:
            at = text.count("\n", 0, pos) + 1
            yield Record(None, file, at, index, raw=_shorten(text[pos:pos + 200]),
                         error="expected ',' or ']' after a list element; the rest of this JSON list "
                               "could not be read; fix: correct the JSON there")
            return


def _read_tsv(text: str, file: str) -> Iterator[Record]:
    header: list[str] | None = None
    index = 0
    for lineno, raw in enumerate(text.split("\n"), start=1):
        line = raw[:-1] if raw.endswith("\r") else raw
        if not line:
            continue
        if header is None:
            header = _check_header(line.split("\t"), file, lineno, "tab")
            continue
        bad = _bad_bytes_error(file, lineno, index, line)
        values = line.split("\t")
        if bad:
            yield bad
        elif len(values) != len(header):
            yield _width_error(file, lineno, index, header, values, line, "tab")
        else:
            yield Record(dict(zip(header, values)), file, lineno, index)
        index += 1


def _read_csv(text: str, file: str) -> Iterator[Record]:
    csv.field_size_limit(1 << 30)
    src = io.StringIO(text, newline="")
    reader = csv.reader(src)
    header: list[str] | None = None
    index, next_line = 0, 1
    while True:
        start = next_line
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            next_line = reader.line_num + 1
            yield Record(None, file, start, index, error=f"unreadable CSV row: {e}; fix: check the quoting")
            index += 1
            continue
        next_line = reader.line_num + 1
        if not values:
            continue
        if header is None:
            header = _check_header(values, file, start, "comma")
            continue
        raw = ",".join(values)
        bad = _bad_bytes_error(file, start, index, raw)
        if bad:
            yield bad
        elif len(values) != len(header):
            yield _width_error(file, start, index, header, values, raw, "comma")
        else:
            yield Record(dict(zip(header, values)), file, start, index)
        index += 1


def _check_header(names: list[str], file: str, line: int, sep: str) -> list[str]:
    names = [n.strip() for n in names]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if "" in names or dupes:
        problem = f"duplicate column name(s) {dupes}" if dupes else "an empty column name"
        raise DataError(f"{file}:{line}: the header row has {problem} (header: {names}); "
                        f"fix: give every {sep}-separated column a unique name in the first row.")
    return names


def _width_error(file, line, index, header, values, raw, sep) -> Record:
    return Record(None, file, line, index, raw=_shorten(raw),
                  error=f"expected {len(header)} {sep}-separated fields ({', '.join(header)}), "
                        f"found {len(values)}; fix: make the row match the header "
                        f"(a {sep} inside a value must be quoted or removed)")


def _read_parquet(p: Path) -> Iterator[Record]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(p)
    except Exception as e:  # pyarrow raises several types for a damaged file
        raise DataError(f"{p}: not a readable Parquet file ({e}); fix: re-export the file.") from e
    index = 0
    for batch in pf.iter_batches(batch_size=4096):
        for row in batch.to_pylist():
            yield Record(row, str(p), None, index)
            index += 1


def _read_conll_text(text: str, file: str) -> Iterator[Record]:
    for index, block in enumerate(_conll_blocks(text)):
        yield _conll_sentence(block, file, index)


def _conll_blocks(text: str) -> Iterator[list[tuple[int, str, list[str]]]]:
    """The sentences: runs of (line number, raw line, columns) between blank/-DOCSTART- lines."""
    block: list[tuple[int, str, list[str]]] = []
    for lineno, raw in enumerate(text.split("\n"), start=1):
        cols = raw.split()
        if not cols or cols[0] == "-DOCSTART-":
            if block:
                yield block
                block = []
            continue
        block.append((lineno, raw, cols))
    if block:
        yield block


def _conll_sentence(block, file: str, index: int) -> Record:
    """One sentence record, or an error record located at the first bad line of the sentence."""
    first = block[0][0]
    tokens, tags = [], []
    for lineno, raw, cols in block:
        bad = _bad_bytes_error(file, lineno, index, raw)
        if bad is None and len(cols) >= 2:
            tokens.append(cols[0])
            tags.append(cols[-1])
            continue
        reason = bad.error if bad else (
            f"expected 'token TAG' (two or more whitespace-separated columns), found one column "
            f"{cols[0]!r}; fix: add the tag or remove the line (sentences are separated by blank lines)")
        return Record(None, file, lineno, index, raw=_shorten(raw),
                      error=f"in the sentence starting at line {first}: {reason}")
    return Record({"tokens": tokens, "tags": tags}, file, first, index)

"""OpenAI ``stop`` strings: where generated text ends, and how much of a growing text may be
streamed without ever sending characters that a stop string found later would cut.

The batcher uses ``find_stop`` on each row's decoded text to end that row as soon as a stop string
appears; the routes use it to cut the answer (the stop string itself is not returned), and a
stream sends only ``streamable(text)`` characters until the row ends, holding back any suffix
that could still grow into a stop string.
"""

from __future__ import annotations

MAX_STOP_STRINGS = 4  # as in OpenAI's API


def stop_strings(stop: str | list[str] | None) -> tuple[str, ...]:
    """The request's ``stop`` as a tuple of non-empty strings."""
    items = [stop] if isinstance(stop, str) else list(stop or [])
    return tuple(dict.fromkeys(s for s in items if s))


def find_stop(text: str, stops: tuple[str, ...]) -> int | None:
    """Index where the earliest stop string starts in ``text``, or None."""
    found = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(found) if found else None


def streamable(text: str, stops: tuple[str, ...]) -> int:
    """How many leading characters of ``text`` are final: up to the earliest stop string when one
    occurs, otherwise all but the longest suffix that is a proper prefix of some stop string."""
    cut = find_stop(text, stops)
    if cut is not None:
        return cut
    held = 0
    for s in stops:
        for k in range(min(len(s) - 1, len(text)), held, -1):
            if text.endswith(s[:k]):
                held = k
                break
    return len(text) - held

"""Generated reference sections of README.md: the config reference (from the schema's field
descriptions) and the CLI reference (from the commands' docstrings).

    python -m tunesmith.docs README.md      # rewrite the generated sections in place
A test checks that README.md is up to date, so the reference cannot drift from the code.
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

MARKERS = {
    "config-reference": lambda: _config_reference(),
    "cli-reference": lambda: _cli_reference(),
}


def _config_reference() -> str:
    from tunesmith.config.docs import reference_markdown

    text = reference_markdown()
    return "\n".join(line.replace("# Config reference", "### Config reference", 1) if i == 0 else
                     (line.replace("## ", "#### ", 1) if line.startswith("## ") else line)
                     for i, line in enumerate(text.splitlines()))


def _cli_reference() -> str:
    from typer.main import get_command

    from tunesmith.cli import app

    root = get_command(app)
    lines = ["| command | what it does | example |", "|---|---|---|"]
    for name, cmd in sorted(_walk(root)):
        doc = inspect.cleandoc(cmd.help or "")
        summary = doc.splitlines()[0] if doc else ""
        example = next((ln.split("Example:", 1)[1].strip() for ln in doc.splitlines() if "Example:" in ln), "")
        lines.append(f"| `tunesmith {name}` | {summary} | `{example}` |")
    lines.append("")
    lines.append("Every command takes `--help`. Config-driven commands accept dotted overrides after the config "
                 "file (`tunesmith train cfg.yaml train.learning_rate=1e-4`).")
    return "\n".join(lines)


def _walk(group, prefix: str = ""):
    for name, cmd in getattr(group, "commands", {}).items():
        full = f"{prefix}{name}"
        if getattr(cmd, "commands", None):
            yield from _walk(cmd, prefix=f"{full} ")
        else:
            yield full, cmd


def render(text: str) -> str:
    """`text` with every generated section replaced by its current content."""
    for key, make in MARKERS.items():
        start, end = f"<!-- {key}:start -->", f"<!-- {key}:end -->"
        if start in text and end in text:
            head, rest = text.split(start, 1)
            _, tail = rest.split(end, 1)
            text = f"{head}{start}\n{make()}\n{end}{tail}"
    return text


def main(argv: list[str]) -> int:
    path = Path(argv[0] if argv else "README.md")
    path.write_text(render(path.read_text(encoding="utf-8")), encoding="utf-8")
    print(f"updated generated sections of {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

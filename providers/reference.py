"""The README's provider reference, rendered from the declarations so the two cannot drift.

``python -m lockzero.providers.reference README.md`` rewrites the part between the markers;
with ``--check`` it only says whether the README is current (exit 1 when it is not).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lockzero.providers.registry import PROVIDERS

BEGIN = "<!-- provider reference, generated from providers/*.py: python -m lockzero.providers.reference README.md -->"
END = "<!-- end of the generated provider reference -->"


def render() -> str:
    blocks = []
    for name, spec in PROVIDERS.items():
        lines = [f"`{name}`: {spec.summary}"]
        lines += [f"- `{key}` (required): {meaning}" for key, meaning in spec.required.items()]
        lines += [f"- `{key}` (optional): {meaning}" for key, meaning in spec.optional.items()]
        lines.append(f"- admin permissions: {spec.permissions}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def splice(readme: str) -> str:
    """``readme`` with the text between the markers replaced by the current rendering."""
    start, end = readme.find(BEGIN), readme.find(END)
    if start < 0 or end < start:
        raise ValueError("the README has no provider reference markers")
    return f"{readme[: start + len(BEGIN)]}\n{render()}\n{readme[end:]}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lockzero.providers.reference", description=__doc__)
    parser.add_argument("readme", type=Path)
    parser.add_argument("--check", action="store_true", help="exit 1 if the README is not current; change nothing")
    args = parser.parse_args(argv)
    try:
        text = args.readme.read_text()
        current = splice(text)
    except (OSError, ValueError) as exc:
        print(f"reference: {exc}", file=sys.stderr)
        return 2
    if current == text:
        return 0
    if args.check:
        print(f"reference: {args.readme} is out of date; run without --check to rewrite it", file=sys.stderr)
        return 1
    args.readme.write_text(current)
    return 0


if __name__ == "__main__":
    sys.exit(main())

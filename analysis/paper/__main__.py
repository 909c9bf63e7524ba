"""`python -m analysis.paper`: render paper/README.md from its template (see the package doc).

The options are parsed before `gather` is imported, so `--help` answers without scipy and pandas."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from analysis.paper.template import PLACEHOLDER, render


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m analysis.paper",
                                description="Render paper/README.md from its hand-written template.")
    p.add_argument("--results", default="results")
    p.add_argument("--template", default="paper/README.template.md")
    p.add_argument("--out", default="paper/README.md")
    p.add_argument("--list", action="store_true", help="print every available placeholder and its value")
    args = p.parse_args(argv)
    from analysis.paper.gather import gather

    found = gather(Path(args.results))
    numbers = {k: v for k, (v, _) in found.items()}
    if args.list:
        used = set(PLACEHOLDER.findall(Path(args.template).read_text())) if Path(args.template).exists() else set()
        for k, (v, source) in sorted(found.items()):
            print(f"{k} = {v}    [{source}]{'' if k in used else '  (not in the template)'}")
        missing = sorted(used - set(found))
        if missing:
            print(f"error: placeholders without a computed value: {', '.join(missing)}", file=sys.stderr)
            return 2
        return 0
    try:
        text = render(Path(args.template).read_text(), numbers)
    except (KeyError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    Path(args.out).write_text(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The report as text: Markdown (``report.md``) and one self-contained HTML page
(``report.html``, CSS inline, figures embedded as base64 PNG).

Written by hand: the page is a flat list of five kinds of block, and tables go through
`analysis.report.tables` (`to_markdown`, `to_html`: numeric columns right-aligned, integers without
decimals). pandas' own writers would change the committed reports: `DataFrame.to_markdown` needs
`tabulate` (not a dependency) and pads cells; `Styler.to_html` adds ids and styles.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Mapping

from analysis.report.blocks import Bullets, FigureRef, Heading, Para, Report, TableRef
from analysis.report.tables import to_html, to_markdown

__all__ = ["render_html", "render_markdown"]


def _inline_html(text: str) -> str:
    out = html.escape(text, quote=False)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)
    out = re.sub(r"(?<![\w*])\*([^*\s][^*]*?)\*(?![\w*])", r"<em>\1</em>", out)
    return out


def render_markdown(rep: Report, figure_dir: str = "figures") -> str:
    """The report as Markdown; figures are linked as ``<figure_dir>/<name>.png``."""
    out = [f"# {rep.title}", ""]
    for b in rep.blocks:
        if isinstance(b, Heading):
            out += ["#" * b.level + " " + b.text, ""]
        elif isinstance(b, Para):
            out += [b.text, ""]
        elif isinstance(b, Bullets):
            out += [f"- {i}" for i in b.items] + [""]
        elif isinstance(b, TableRef):
            df, caption = rep.tables[b.name]
            out += [f"*Table ({b.name}). {caption}*", "", to_markdown(df)]
        elif isinstance(b, FigureRef):
            _, caption = rep.figures[b.name]
            target = f"{figure_dir}/{b.name}.png"
            if " " in target:  # an arm named "no BN": CommonMark takes a target with spaces only in <>
                target = f"<{target}>"
            out += [f"![{b.name}]({target})", "",
                    f"*Figure ({b.name}). {caption}*", ""]
    return "\n".join(out).rstrip() + "\n"


CSS = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; max-width: 1180px;
       margin: 2em auto; padding: 0 1.2em; color: #222; line-height: 1.5; }
h1 { border-bottom: 2px solid #ddd; padding-bottom: .3em; }
h2 { border-bottom: 1px solid #eee; padding-bottom: .2em; margin-top: 2em; }
code { background: #f3f3f3; padding: 0 .25em; border-radius: 3px; font-size: 92%; }
table { border-collapse: collapse; margin: .6em 0 1.4em; font-size: 88%; }
th, td { border-top: 1px solid #ddd; padding: .3em .65em; vertical-align: top; text-align: left; }
thead th { border-bottom: 2px solid #999; border-top: 2px solid #999; background: #fafafa; }
tbody tr:last-child td { border-bottom: 2px solid #999; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.caption { color: #555; font-size: 90%; margin-bottom: .3em; }
figure { margin: 1.2em 0 2em; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: 90%; }
li { margin: .25em 0; }
"""


def render_html(rep: Report, pngs: Mapping[str, bytes]) -> str:
    """One self-contained HTML page; `pngs` holds each figure's PNG bytes (embedded base64)."""
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>{html.escape(rep.title)}</title>", f"<style>{CSS}</style>", "</head><body>",
           f"<h1>{html.escape(rep.title)}</h1>"]
    for b in rep.blocks:
        if isinstance(b, Heading):
            out.append(f"<h{b.level}>{_inline_html(b.text)}</h{b.level}>")
        elif isinstance(b, Para):
            out.append(f"<p>{_inline_html(b.text)}</p>")
        elif isinstance(b, Bullets):
            out.append("<ul>" + "".join(f"<li>{_inline_html(i)}</li>" for i in b.items) + "</ul>")
        elif isinstance(b, TableRef):
            df, caption = rep.tables[b.name]
            out.append(f'<div class="caption">Table ({html.escape(b.name)}). '
                       f"{_inline_html(caption)}</div>")
            out.append(to_html(df))
        elif isinstance(b, FigureRef):
            _, caption = rep.figures[b.name]
            data = base64.b64encode(pngs[b.name]).decode("ascii")
            out.append(f'<figure><img alt="{html.escape(b.name)}" '
                       f'src="data:image/png;base64,{data}">'
                       f"<figcaption>Figure ({html.escape(b.name)}). {_inline_html(caption)}"
                       "</figcaption></figure>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"

"""A small, dependency-free HTML report builder.

Figures are matplotlib figures embedded as base64 PNG, so a report is one file.

Examples
--------
>>> r = Report("demo")
>>> r.heading("Results")
>>> r.table([{"detector": "vrae", "auc": 0.99}])
>>> r.cards([("ROC AUC", 0.99, "test split")])
>>> "<table" in r.html() and "vrae" in r.html() and 'class="card"' in r.html()
True
"""
from __future__ import annotations

import base64
import html
import io
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

_CSS = """
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em auto;max-width:1200px;padding:0 1em;color:#222;
line-height:1.4}
table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}img{max-width:100%;height:auto}
.scroll{max-width:100%;overflow-x:auto}figure{margin:1em 0}figcaption{color:#555;max-width:60em}
pre{background:#f6f6f6;padding:8px;overflow:auto}.note{color:#555}.bad{color:#b00}.good{color:#070}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:1em 0}
.card{border:1px solid #ddd;border-radius:6px;padding:8px 12px;min-width:150px;max-width:260px;background:#fafafa}
.card .v{font-size:1.5em;font-weight:600}.card .k{color:#555;font-size:.85em}.card .n{color:#777;font-size:.75em}
table.text td,table.text th{text-align:left}
"""


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    return html.escape(str(v))


def _card(v: Any) -> str:
    """A card's value: large numbers with thousands separators, others to 4 significant digits.

    >>> _card(12345.6), _card(0.68312), _card(7), _card("ok")
    ('12,346', '0.6831', '7', 'ok')
    """
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return html.escape(str(v))
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


class Report:
    """Accumulates HTML parts; :meth:`write` saves ``report.html``."""

    def __init__(self, title: str):
        self.title = title
        self.parts: list[str] = []

    def heading(self, text: str, level: int = 2, id: str | None = None) -> None:
        """A heading; ``id`` names the section (``<h2 id=...>``) for links and checks."""
        i = f' id="{html.escape(id)}"' if id else ""
        self.parts.append(f"<h{level}{i}>{html.escape(text)}</h{level}>")

    def cards(self, items: Sequence[tuple[str, Any, str]]) -> None:
        """A row of summary cards, each ``(label, value, note)``; a value of None shows as "-"."""
        out = []
        for label, value, note in items:
            v = "-" if value is None else _card(value)
            n = f'<div class="n">{html.escape(note)}</div>' if note else ""
            out.append(f'<div class="card"><div class="k">{html.escape(label)}</div><div class="v">{v}</div>{n}</div>')
        self.parts.append(f'<div class="cards">{"".join(out)}</div>')

    def link(self, href: str, text: str, before: str = "", after: str = "") -> None:
        """A paragraph with one relative link (e.g. to the JSON beside the report)."""
        self.parts.append(f"<p>{html.escape(before)}<a href=\"{html.escape(href)}\">{html.escape(text)}</a>"
                          f"{html.escape(after)}</p>")

    def text(self, text: str, cls: str = "") -> None:
        c = f' class="{cls}"' if cls else ""
        self.parts.append(f"<p{c}>{html.escape(text)}</p>")

    def raw(self, html_text: str) -> None:
        self.parts.append(html_text)

    def code(self, text: str) -> None:
        self.parts.append(f"<pre>{html.escape(text)}</pre>")

    def json(self, obj: Any) -> None:
        self.code(json.dumps(obj, indent=2, default=str))

    def table(self, rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None, cls: str = "") -> None:
        """A table of ``rows`` (dicts; ``columns`` picks and orders them); ``cls="text"`` left-aligns every cell."""
        if not rows:
            self.text("(no rows)", "note")
            return
        cols = list(columns or rows[0].keys())
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in cols)
        body = "".join("<tr>" + "".join(f"<td>{_fmt(r.get(c, ''))}</td>" for c in cols) + "</tr>" for r in rows)
        c = f' class="{html.escape(cls)}"' if cls else ""
        self.parts.append(f'<div class="scroll"><table{c}><tr>{head}</tr>{body}</table></div>')

    def figure(self, fig: Any, caption: str = "") -> None:
        """Embed a matplotlib figure (closed afterwards)."""
        import matplotlib.pyplot as plt

        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
        plt.close(fig)
        self.image_png(buf.getvalue(), caption)

    def image_png(self, png: bytes, caption: str = "") -> None:
        b64 = base64.b64encode(png).decode()
        cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
        self.parts.append(f'<figure><img src="data:image/png;base64,{b64}"/>{cap}</figure>')

    def html(self) -> str:
        return (
            f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(self.title)}</title>"
            f"<style>{_CSS}</style></head><body><h1>{html.escape(self.title)}</h1>{''.join(self.parts)}</body></html>"
        )

    def write(self, out_dir: str | Path, name: str = "report.html") -> Path:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        p = out / name
        p.write_text(self.html())
        return p


def use_agg() -> None:
    """Select the non-interactive matplotlib backend (call before pyplot in jobs)."""
    import matplotlib

    matplotlib.use("Agg", force=True)


def write_metrics(out_dir: str | Path, metrics: Mapping[str, Any], name: str = "metrics.json") -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    p = out / name
    tmp = out / (name + ".tmp")  # written whole, then renamed: a stop never leaves half a file
    tmp.write_text(json.dumps(metrics, indent=2, sort_keys=False, default=float))
    os.replace(tmp, p)
    return p

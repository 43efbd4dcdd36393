"""A small, dependency-free HTML report builder.

Figures are matplotlib figures embedded as base64 PNG, so a report is one file.

Examples
--------
>>> r = Report("demo")
>>> r.heading("Results")
>>> r.table([{"detector": "vrae", "auc": 0.99}])
>>> "<table" in r.html() and "vrae" in r.html()
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
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em auto;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}img{max-width:100%}
pre{background:#f6f6f6;padding:8px;overflow:auto}.note{color:#555}.bad{color:#b00}.good{color:#070}
"""


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    return html.escape(str(v))


class Report:
    """Accumulates HTML parts; :meth:`write` saves ``report.html``."""

    def __init__(self, title: str):
        self.title = title
        self.parts: list[str] = []

    def heading(self, text: str, level: int = 2) -> None:
        self.parts.append(f"<h{level}>{html.escape(text)}</h{level}>")

    def text(self, text: str, cls: str = "") -> None:
        c = f' class="{cls}"' if cls else ""
        self.parts.append(f"<p{c}>{html.escape(text)}</p>")

    def raw(self, html_text: str) -> None:
        self.parts.append(html_text)

    def code(self, text: str) -> None:
        self.parts.append(f"<pre>{html.escape(text)}</pre>")

    def json(self, obj: Any) -> None:
        self.code(json.dumps(obj, indent=2, default=str))

    def table(self, rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> None:
        if not rows:
            self.text("(no rows)", "note")
            return
        cols = list(columns or rows[0].keys())
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in cols)
        body = "".join("<tr>" + "".join(f"<td>{_fmt(r.get(c, ''))}</td>" for c in cols) + "</tr>" for r in rows)
        self.parts.append(f"<table><tr>{head}</tr>{body}</table>")

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

"""The report's PDF, laid out by reportlab's platypus: prose in a proportional font that flows,
tables whose cells wrap and whose header row repeats on every page, wide tables split into parts
that share their label columns, figures scaled to the page. No cell is ever cut."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

PAGE_MARGIN = 28                     # points
MAX_COLUMNS = 10                     # columns of one table part (label columns included)
LABELS = ("ratio", "dataset", "teacher", "what", "model", "row", "parameter", "value", "claim")


def _styles():
    from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
    base = getSampleStyleSheet()
    return {"title": base["Title"], "h1": base["Heading1"], "h2": base["Heading2"],
            "body": ParagraphStyle("body", parent=base["BodyText"], fontSize=9, leading=11.5, spaceAfter=3),
            "indent": ParagraphStyle("indent", parent=base["BodyText"], fontSize=9, leading=11.5, leftIndent=14,
                                     spaceAfter=2),
            "note": ParagraphStyle("note", parent=base["BodyText"], fontSize=7.5, leading=9.5, textColor="#444444"),
            "cell": ParagraphStyle("cell", parent=base["BodyText"], fontSize=7, leading=8.5),
            "head": ParagraphStyle("head", parent=base["BodyText"], fontSize=7, leading=8.5, fontName="Helvetica-Bold")}


def _escape(text) -> str:
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def prose(lines: list[str], styles) -> list:
    """Paragraphs of report lines; a line that starts with two spaces is indented."""
    from reportlab.platypus import Paragraph, Spacer
    out = []
    for line in lines:
        if not line.strip():
            out.append(Spacer(1, 5))
            continue
        style = styles["indent"] if line.startswith("  ") else styles["body"]
        out.append(Paragraph(_escape(line.strip()), style))
    return out


def column_parts(table: pd.DataFrame, max_columns: int = MAX_COLUMNS) -> list[pd.DataFrame]:
    """`table` as parts of at most `max_columns` columns that each repeat its label columns (the
    first of `LABELS` present, at most 3; else its first column), so that every column is shown."""
    labels = [c for c in table.columns if c in LABELS][:3] or list(table.columns[:1])
    rest = [c for c in table.columns if c not in labels]
    width = max(1, max_columns - len(labels))
    if len(rest) <= width:
        return [table]
    return [table[labels + rest[i:i + width]] for i in range(0, len(rest), width)]


def table_flowables(table: pd.DataFrame, width: float, styles) -> list:
    """The platypus Table(s) of `table`: wrapped cells, the header row repeated on every page, one
    part per `column_parts` entry with a line naming the part, widths by content within `width`."""
    from reportlab.lib import colors
    from reportlab.platypus import Paragraph, Spacer, Table, TableStyle
    if table.empty:
        return [Paragraph("(no finished trials)", styles["body"])]
    parts = column_parts(table)
    out = []
    for k, part in enumerate(parts):
        cells = [["" if v is None or (isinstance(v, float) and v != v) else str(v) for v in row]
                 for row in part.to_numpy().tolist()]
        header = [Paragraph(_escape(c), styles["head"]) for c in part.columns]
        body = [[Paragraph(_escape(v), styles["cell"]) for v in row] for row in cells]
        longest = [max([len(str(c))] + [len(row[i]) for row in cells]) for i, c in enumerate(part.columns)]
        weights = [min(max(n, 4), 40) for n in longest]
        widths = [width * w / sum(weights) for w in weights]
        t = Table([header] + body, colWidths=widths, repeatRows=1)
        t.setStyle(TableStyle([("GRID", (0, 0), (-1, -1), 0.25, colors.grey),
                               ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e8e8e8")),
                               ("VALIGN", (0, 0), (-1, -1), "TOP"),
                               ("LEFTPADDING", (0, 0), (-1, -1), 2), ("RIGHTPADDING", (0, 0), (-1, -1), 2)]))
        if len(parts) > 1:
            out.append(Paragraph(f"part {k + 1} of {len(parts)} (columns {', '.join(map(str, part.columns))})",
                                 styles["note"]))
        out += [t, Spacer(1, 8)]
    return out


def figure_flowable(png: Path, width: float, height: float):
    """The PNG at `png` as an Image scaled to fit width x height, aspect kept."""
    from reportlab.lib.utils import ImageReader
    from reportlab.platypus import Image
    w, h = ImageReader(str(png)).getSize()
    scale = min(width / w, height / h, 1.0 if w < width else width / w)
    return Image(str(png), width=w * scale, height=h * scale)


def write(out: Path, summary_title: str, summary: list[str], cover_title: str, cover: list[str],
          sections: list[dict]) -> int:
    """Write the PDF at `out`: the summary and the cover as flowing prose, then per section its
    title, tables (title, table, notes) and figures (title, PNG path). Returns the page count.

    sections: [{"title": str, "tables": [(title, DataFrame, [note lines])], "figures": [(title, png)]}].
    """
    from reportlab.lib.pagesizes import A4, landscape
    from reportlab.platypus import PageBreak, Paragraph, SimpleDocTemplate
    styles = _styles()
    pages = {"n": 0}

    def count(canvas, doc):
        pages["n"] = doc.page
        canvas.setFont("Helvetica", 7)
        canvas.drawRightString(landscape(A4)[0] - PAGE_MARGIN, 14, f"page {doc.page}")

    doc = SimpleDocTemplate(str(out), pagesize=landscape(A4), leftMargin=PAGE_MARGIN, rightMargin=PAGE_MARGIN,
                            topMargin=PAGE_MARGIN, bottomMargin=PAGE_MARGIN, title=cover_title)
    width, height = doc.width, doc.height
    story = [Paragraph(_escape(summary_title), styles["title"]), *prose(summary, styles), PageBreak(),
             Paragraph(_escape(cover_title), styles["h1"]), *prose(cover, styles)]
    for sec in sections:
        story += [PageBreak(), Paragraph(_escape(sec["title"]), styles["h1"])]
        for title, table, notes in sec["tables"]:
            story.append(Paragraph(_escape(title), styles["h2"]))
            story += table_flowables(table, width, styles)
            story += [Paragraph(_escape(n), styles["note"]) for n in notes]
        for title, png in sec["figures"]:
            story += [Paragraph(_escape(title), styles["h2"]), figure_flowable(png, width, height - 60)]
    doc.build(story, onFirstPage=count, onLaterPages=count)
    return pages["n"]

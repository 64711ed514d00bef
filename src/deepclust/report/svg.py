"""Small inline-SVG charts for the HTML report (no plotting library, no network)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

#: Tableau 10 followed by its light variants: distinct colours for up to 20 clusters
PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f",
           "#bab0ac", "#1f77b4", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2",
           "#dbdb8d", "#9edae5"]


def color(i: int) -> str:
    """Colour of cluster ``i`` (noise, -1, is grey); beyond 20 clusters, evenly spaced hues."""
    if i < 0:
        return "#c8c8c8"
    if i < len(PALETTE):
        return PALETTE[i]
    return f"hsl({(i * 137.508) % 360:.0f},55%,55%)"


def _fmt(v: float) -> str:
    if v == 0 or not math.isfinite(v):
        return "0" if v == 0 else "–"
    a = abs(v)
    if a >= 1e4 or a < 1e-3:
        return f"{v:.2g}"
    if a >= 100:
        return f"{v:.0f}"
    return f"{v:.3g}"


def _ticks(lo: float, hi: float, n: int = 4) -> list[float]:
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    step = 10 ** math.floor(math.log10((hi - lo) / n))
    for m in (1, 2, 5, 10):
        if (hi - lo) / (step * m) <= n:
            step *= m
            break
    start = math.ceil(lo / step) * step
    return [start + i * step for i in range(int((hi - start) / step + 1e-9) + 1)]


def line_chart(xs: Sequence[float], series: dict[str, Sequence[float]], *, width: int = 300, height: int = 170,
               title: str = "", mark_x: float | None = None, dot_x: float | None = None, x_label: str = "",
               y_label: str = "", int_x: bool = True) -> str:
    """Lines over shared x values; ``mark_x`` draws a dashed vertical line, ``dot_x`` a dot on the first series."""
    ml, mr, mt, mb = 46, 10, 24 if title else 10, 30
    legend_w = sum(24 + 5.8 * len(name) for name in series) if len(series) > 1 else 0
    legend_below_title = legend_w and ml + 8 + 7.5 * len(title) + legend_w > width - 4
    if legend_below_title:
        mt += 14
    pw, ph = width - ml - mr, height - mt - mb
    vals = [v for s in series.values() for v in s if v is not None and math.isfinite(v)]
    if not xs or not vals:
        return f'<svg class="chart" width="{width}" height="{height}" role="img"><text x="10" y="20">{escape(title)}: no data</text></svg>'
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(vals), max(vals)
    if y1 == y0:
        y0, y1 = y0 - 1, y1 + 1
    pad = (y1 - y0) * 0.08
    y0, y1 = y0 - pad, y1 + pad
    sx = lambda x: ml + (pw * (x - x0) / (x1 - x0) if x1 > x0 else pw / 2)  # noqa: E731
    sy = lambda y: mt + ph - ph * (y - y0) / (y1 - y0)  # noqa: E731
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
             f'aria-label="{escape(title)}">']
    if title:
        parts.append(f'<text class="ct" x="{ml}" y="15">{escape(title)}</text>')
    for t in _ticks(y0, y1):
        parts.append(f'<line class="grid" x1="{ml}" x2="{ml + pw}" y1="{sy(t):.1f}" y2="{sy(t):.1f}"/>'
                     f'<text class="tick" x="{ml - 4}" y="{sy(t) + 3:.1f}" text-anchor="end">{_fmt(t)}</text>')
    xt = sorted(set(xs)) if int_x and len(set(xs)) <= 16 else _ticks(x0, x1, 6)
    if int_x and len(xt) > 16:
        xt = [x for x in xt if float(x).is_integer()]
    for t in xt:
        parts.append(f'<text class="tick" x="{sx(t):.1f}" y="{mt + ph + 13}" text-anchor="middle">'
                     f'{int(t) if int_x else _fmt(t)}</text>')
    parts.append(f'<line class="axis" x1="{ml}" x2="{ml + pw}" y1="{mt + ph}" y2="{mt + ph}"/>')
    if x_label:
        parts.append(f'<text class="tick" x="{ml + pw / 2}" y="{height - 3}" text-anchor="middle">{escape(x_label)}</text>')
    if mark_x is not None:
        parts.append(f'<line class="mark" x1="{sx(mark_x):.1f}" x2="{sx(mark_x):.1f}" y1="{mt}" y2="{mt + ph}"/>')
    for i, (name, ys) in enumerate(series.items()):
        pts = [(sx(x), sy(y)) for x, y in zip(xs, ys) if y is not None and math.isfinite(y)]
        if not pts:
            continue
        d = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
        c = color(i)
        parts.append(f'<polyline fill="none" stroke="{c}" stroke-width="2" points="{d}"><title>{escape(name)}</title></polyline>')
        if len(pts) <= 40:
            parts.extend(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.2" fill="{c}"/>' for x, y in pts)
    if dot_x is not None:
        first = next(iter(series.values()))
        for x, y in zip(xs, first):
            if x == dot_x and y is not None and math.isfinite(y):
                parts.append(f'<circle class="choice" cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="5"/>')
    if len(series) > 1:
        lx = ml if legend_below_title else max(ml + 8 + 7.5 * len(title), width - 4 - legend_w)
        ly = 24 if legend_below_title else 9
        for i, name in enumerate(series):
            parts.append(f'<rect x="{lx}" y="{ly}" width="10" height="3" fill="{color(i)}"/>'
                         f'<text class="tick" x="{lx + 13}" y="{ly + 5}">{escape(name)}</text>')
            lx += 24 + 5.8 * len(name)
    if y_label:
        parts.append(f'<text class="tick" transform="translate(11,{mt + ph / 2}) rotate(-90)" '
                     f'text-anchor="middle">{escape(y_label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def scatter(x: Sequence[float], y: Sequence[float], groups: Sequence[int], *, names: dict[int, str] | None = None,
            width: int = 520, height: int = 440, title: str = "") -> str:
    """Points coloured by group, with a legend on the right; ``names`` labels the groups."""
    legend_w = 120
    m = 8
    pw, ph = width - legend_w - 2 * m, height - 2 * m - (18 if title else 0)
    top = m + (18 if title else 0)
    if len(x) == 0:
        return ""
    x0, x1, y0, y1 = min(x), max(x), min(y), max(y)
    xr, yr = (x1 - x0) or 1.0, (y1 - y0) or 1.0
    s = min(pw / xr, ph / yr)
    ox, oy = m + (pw - s * xr) / 2, top + (ph - s * yr) / 2
    parts = [f'<svg class="chart map" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
             f'aria-label="{escape(title)}">']
    if title:
        parts.append(f'<text class="ct" x="{m}" y="14">{escape(title)}</text>')
    uniq = sorted(set(int(g) for g in groups))
    r = 2.4 if len(x) < 1500 else 1.7
    for g in uniq:
        pts = "".join(f'<circle cx="{ox + s * (xi - x0):.1f}" cy="{oy + s * (y1 - yi):.1f}" r="{r}"/>'
                      for xi, yi, gi in zip(x, y, groups) if gi == g)
        label = escape(names.get(g, str(g)) if names else str(g))
        parts.append(f'<g fill="{color(g)}" fill-opacity="0.75" data-group="{g}"><title>{label}</title>{pts}</g>')
    lx, ly = width - legend_w + 6, top + 4
    step = min(16, max(9, (height - top - 8) / max(1, len(uniq))))
    for i, g in enumerate(uniq):
        yy = ly + i * step
        label = names.get(g, str(g)) if names else str(g)
        label = label if len(label) <= 15 else label[:14] + "…"
        parts.append(f'<circle cx="{lx + 4}" cy="{yy + 4}" r="4" fill="{color(g)}"/>'
                     f'<text class="tick" x="{lx + 12}" y="{yy + 8}">{escape(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def bars(values: Sequence[float], labels: Sequence[str], colors: Sequence[str], *, width: int = 460,
         bar_h: int = 16, fmt: str = "{:,.0f}", title: str = "") -> str:
    """Horizontal bars (one per row), the value written at the end of each."""
    ml, mr = 70, 60
    top = 20 if title else 4
    height = top + len(values) * (bar_h + 4) + 4
    vmax = max(values) if values else 1
    pw = width - ml - mr
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
             f'aria-label="{escape(title)}">']
    if title:
        parts.append(f'<text class="ct" x="4" y="14">{escape(title)}</text>')
    for i, (v, lab, c) in enumerate(zip(values, labels, colors)):
        yy = top + i * (bar_h + 4)
        w = pw * v / vmax if vmax else 0
        parts.append(f'<text class="tick" x="{ml - 6}" y="{yy + bar_h - 4}" text-anchor="end">{escape(lab)}</text>'
                     f'<rect x="{ml}" y="{yy}" width="{max(w, 1):.1f}" height="{bar_h}" rx="3" fill="{c}"/>'
                     f'<text class="tick" x="{ml + w + 4:.1f}" y="{yy + bar_h - 4}">{escape(fmt.format(v))}</text>')
    parts.append("</svg>")
    return "".join(parts)


def heatmap(matrix: Sequence[Sequence[float]], rows: Sequence[str], cols: Sequence[str], *, cell: int = 30,
            title: str = "", row_title: str = "", col_title: str = "") -> str:
    """Counts as a blue heat map with the numbers written in; rows normalised for the colour."""
    n_r, n_c = len(matrix), len(matrix[0]) if matrix else 0
    cell = max(16, min(cell, int(640 / max(1, n_c))))
    ml, mt = 110, 46 if title else 30
    width, height = ml + n_c * cell + 10, mt + n_r * cell + 10
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
             f'aria-label="{escape(title)}">']
    if title:
        parts.append(f'<text class="ct" x="4" y="14">{escape(title)}</text>')
    if col_title:
        parts.append(f'<text class="tick" x="{ml + n_c * cell / 2}" y="{mt - 18}" text-anchor="middle">{escape(col_title)}</text>')
    fs = 10 if cell >= 26 else 8
    for j, c in enumerate(cols):
        parts.append(f'<text class="tick" x="{ml + j * cell + cell / 2}" y="{mt - 5}" text-anchor="middle">{escape(str(c))}</text>')
    for i, row in enumerate(matrix):
        tot = max(sum(row), 1)
        name = str(rows[i])
        name = name if len(name) <= 16 else name[:15] + "…"
        parts.append(f'<text class="tick" x="{ml - 5}" y="{mt + i * cell + cell / 2 + 3}" text-anchor="end">{escape(name)}</text>')
        for j, v in enumerate(row):
            a = v / tot
            fill = f"rgba(37,99,235,{0.06 + 0.9 * a:.3f})"
            txt = "#fff" if a > 0.5 else "#333"
            parts.append(f'<rect x="{ml + j * cell}" y="{mt + i * cell}" width="{cell - 1}" height="{cell - 1}" fill="{fill}">'
                         f'<title>{escape(name)} → {escape(str(cols[j]))}: {int(v)}</title></rect>')
            if v and cell >= 20:
                parts.append(f'<text x="{ml + j * cell + cell / 2 - 0.5}" y="{mt + i * cell + cell / 2 + 3}" '
                             f'font-size="{fs}" text-anchor="middle" fill="{txt}">{int(v)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def dendrogram(linkage: Sequence[Sequence[float]], leaves: Sequence[int], *, cut_height: float | None = None,
               width: int = 720, height: int = 240, title: str = "") -> str:
    """A merge tree (a scipy linkage matrix over ``leaves``, laid out by :func:`scipy.cluster.hierarchy.dendrogram`),
    leaves coloured as clusters; ``cut_height`` draws a dashed line where the tree is cut."""
    from scipy.cluster.hierarchy import dendrogram as layout

    ml, mr, mt, mb = 46, 10, 24 if title else 10, 34
    d = layout([list(map(float, row)) for row in linkage], no_plot=True, labels=[str(c) for c in leaves])
    xmax = 10.0 * len(leaves)
    ymax = max((max(y) for y in d["dcoord"]), default=1.0) or 1.0
    pw, ph = width - ml - mr, height - mt - mb

    def X(x: float) -> float:
        return ml + pw * x / xmax

    def Y(y: float) -> float:
        return mt + ph * (1 - y / ymax)

    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
             f'aria-label="{escape(title)}">']
    if title:
        parts.append(f'<text class="ct" x="{ml}" y="14">{escape(title)}</text>')
    for t in _ticks(0.0, ymax):
        parts.append(f'<line class="grid" x1="{ml}" x2="{ml + pw}" y1="{Y(t):.1f}" y2="{Y(t):.1f}"/>'
                     f'<text class="tick" x="{ml - 4}" y="{Y(t) + 3:.1f}" text-anchor="end">{_fmt(t)}</text>')
    for xs, ys in zip(d["icoord"], d["dcoord"]):
        pts = " ".join(f"{X(x):.1f},{Y(y):.1f}" for x, y in zip(xs, ys))
        parts.append(f'<polyline points="{pts}" fill="none" stroke="#374151" stroke-width="1.2"/>')
    font = 10.5 if len(leaves) <= 40 else 7
    for i, name in enumerate(d["ivl"]):
        x = X(5 + 10 * i)
        parts.append(f'<circle cx="{x:.1f}" cy="{Y(0):.1f}" r="3" fill="{color(int(name))}"/>')
        if len(leaves) <= 80:
            parts.append(f'<text class="tick" x="{x:.1f}" y="{Y(0) + 14:.1f}" text-anchor="middle" '
                         f'style="font-size:{font}px">{escape(name)}</text>')
    if cut_height is not None:
        parts.append(f'<line class="mark" x1="{ml}" x2="{ml + pw}" y1="{Y(cut_height):.1f}" y2="{Y(cut_height):.1f}"/>')
    parts.append(f'<text class="tick" x="{ml + pw / 2:.0f}" y="{height - 4}" text-anchor="middle">clusters '
                 '(height: Ward distance of the merge)</text></svg>')
    return "".join(parts)

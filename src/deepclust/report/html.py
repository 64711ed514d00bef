"""Rendering the report data (see :mod:`deepclust.report`) as one self-contained HTML page."""

from __future__ import annotations

import math
from html import escape
from typing import Any

from deepclust.report import svg

CSS = """
:root{--fg:#1f2937;--muted:#6b7280;--line:#e5e7eb;--bg:#f8fafc;--card:#fff;--accent:#2563eb}
*{box-sizing:border-box}
body{margin:0;font:15px/1.5 -apple-system,BlinkMacSystemFont,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;
 color:var(--fg);background:var(--bg)}
header{background:#0f172a;color:#fff;padding:22px 0 16px}
header h1{margin:0;font-size:24px;font-weight:600}
header p{margin:4px 0 0;color:#cbd5e1}
nav{position:sticky;top:0;z-index:2;background:#fff;border-bottom:1px solid var(--line)}
nav a{display:inline-block;padding:9px 12px;color:var(--fg);text-decoration:none;font-size:14px}
nav a:hover{color:var(--accent)}
.wrap{max-width:1120px;margin:0 auto;padding:0 20px}
section{margin:26px 0}
h2{font-size:19px;margin:0 0 12px;padding-bottom:6px;border-bottom:1px solid var(--line)}
h3{font-size:16px;margin:0}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:12px}
.card{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:12px 14px}
.card .v{font-size:22px;font-weight:600}
.card .l{color:var(--muted);font-size:12.5px;text-transform:uppercase;letter-spacing:.03em}
.grid2{display:grid;grid-template-columns:repeat(auto-fit,minmax(460px,1fr));gap:16px}
.panel{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:14px;overflow-x:auto}
.note{color:var(--muted);font-size:13.5px;margin:6px 0 0}
table{border-collapse:collapse;font-size:13.5px}
td,th{padding:4px 10px 4px 0;text-align:left;vertical-align:top;border-bottom:1px solid var(--line)}
th{color:var(--muted);font-weight:600}
td.num,th.num{text-align:right}
.smalls{display:flex;flex-wrap:wrap;gap:10px}
.chart text{font-family:inherit}
.chart .ct{font-size:12.5px;font-weight:600;fill:#111827}
.chart .tick{font-size:10.5px;fill:#4b5563}
.chart .grid{stroke:#eef0f3}
.chart .axis{stroke:#9ca3af}
.chart .mark{stroke:#111827;stroke-dasharray:4 3;stroke-width:1.2}
.chart .choice{fill:none;stroke:#dc2626;stroke-width:2}
.cluster{background:var(--card);border:1px solid var(--line);border-left-width:6px;border-radius:10px;
 padding:14px 16px;margin:0 0 14px}
.cluster .head{display:flex;flex-wrap:wrap;align-items:baseline;gap:6px 16px;margin-bottom:8px}
.pill{display:inline-block;background:#f1f5f9;border-radius:999px;padding:1px 9px;font-size:12.5px;color:#334155}
.gallery{display:flex;flex-wrap:wrap;gap:4px;margin:4px 0 8px}
.gallery figure{margin:0;text-align:center}
.gallery img{width:56px;height:56px;image-rendering:pixelated;border:1px solid var(--line);border-radius:4px;background:#000}
.gallery figcaption{font-size:10px;color:var(--muted)}
.pair{display:flex;flex-wrap:wrap;gap:0 36px}
.chart{max-width:100%;height:auto}
.kvs{display:grid;grid-template-columns:repeat(auto-fill,minmax(210px,1fr));gap:2px 18px;font-size:13.5px}
.kv{display:flex;justify-content:space-between;border-bottom:1px solid var(--line);padding:2px 0}
.kv span{color:#4b5563;overflow:hidden;text-overflow:ellipsis;white-space:nowrap;margin-right:8px}
.kw{display:inline-block;margin:2px 4px 2px 0;padding:1px 8px;border-radius:6px;background:#eef2ff;color:#3730a3}
.docs{margin:4px 0 0;padding-left:18px}
.docs li{margin:2px 0}
.sub{font-size:13px;font-weight:600;color:#374151;margin:8px 0 2px}
.bar{display:inline-block;height:8px;border-radius:4px;background:var(--accent);vertical-align:middle}
footer{color:var(--muted);font-size:12.5px;padding:20px 0 40px}
code{background:#f1f5f9;border-radius:4px;padding:0 4px;font-size:13px}
"""


def _num(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if isinstance(v, int):
        return f"{v:,}"
    return f"{v:.{digits}f}"


def _card(value: str, label: str, title: str = "") -> str:
    t = f' title="{escape(title)}"' if title else ""
    return f'<div class="card"{t}><div class="v">{value}</div><div class="l">{escape(label)}</div></div>'


def _overview(d: dict[str, Any]) -> str:
    s = d["summary"]
    sc = s.get("scores", {})
    cards = [_card(_num(s.get("n_clusters_found") or s.get("n_clusters")), "clusters"),
             _card(_num(s.get("n_samples")), "samples"),
             _card(_num(sc.get("silhouette")), "silhouette", "mean silhouette in the clustered space, -1..1, higher is better"),
             _card(_num(sc.get("davies_bouldin")), "Davies-Bouldin", "lower is better"),
             _card(_num(sc.get("size_entropy")), "size balance", "entropy of cluster sizes / log k: 1 = equal sizes")]
    if "acc" in sc:
        cards += [_card(_num(sc["acc"]), "ACC", "Hungarian-matched accuracy against the known labels"),
                  _card(_num(sc["nmi"]), "NMI"), _card(_num(sc["ari"]), "ARI")]
    noise = s.get("noise")
    if noise:
        cards.append(_card(f'{noise["n_noise"]:,}', "noise points",
                           f'{100 * noise["share"]:.1f}% left unassigned (-1): {noise["rule"]}. {noise["scores"]}'))
    notes = d.get("notes") or {}
    rows = [("data", f"{escape(str(s.get('dataset')))} ({escape(str(s.get('modality')))}) — {escape(str(s.get('protocol') or ''))}"),
            ("method", f"<code>{escape(str(s.get('method')))}</code> {escape(notes.get('method', ''))}"),
            ("encoder", f"<code>{escape(str(s.get('encoder')))}</code> {escape(notes.get('encoder', ''))}"),
            ("number of clusters", escape(notes.get("k", str(s.get("n_clusters"))))),
            ("device", escape(str(s.get("device_name") or s.get("device")))),
            ("seed", escape(str((s.get("params") or {}).get("random_state", ""))))]
    meta = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    seconds = s.get("seconds") or {}
    times = [(k, seconds[k]) for k in ("load", "features") if k in seconds]
    times += [("choosing k", v) for k, v in (d.get("timings") or {}).items() if k == "select_k"]
    times += [(k, seconds[k]) for k in ("fit", "score") if k in seconds]
    times += [("explanations and map", v) for k, v in (d.get("timings") or {}).items() if k == "report"]
    trows = "".join(f'<tr><td>{escape(k)}</td><td class="num">{float(v):.2f} s</td></tr>' for k, v in times)
    vers = ", ".join(f"{k} {v}" for k, v in (s.get("versions") or {}).items())
    return (f'<section id="overview"><h2>Overview</h2><div class="cards">{"".join(cards)}</div>'
            f'<div class="grid2" style="margin-top:14px"><div class="panel"><table>{meta}</table></div>'
            f'<div class="panel"><table><tr><th>stage</th><th class="num">time</th></tr>{trows}</table>'
            f'<p class="note">Versions: {escape(vers)}</p></div></div></section>')


def _select_k(d: dict[str, Any]) -> str:
    sk = d.get("select_k")
    if not sk:
        return ""
    ks = sk["k_values"]
    charts = []
    for name, curve in sk["curves"].items():
        charts.append(f'<div class="panel">{svg.line_chart(ks, {name: curve}, title=name.replace("_", " "), mark_x=sk["k"], dot_x=sk["choices"].get(name), x_label="k")}'
                      f'<p class="note" style="max-width:300px">{escape(sk.get("descriptions", {}).get(name, ""))}; '
                      f'chooses <b>{sk["choices"].get(name)}</b></p></div>')
    rows = "".join(f"<tr><td>{escape(c)}</td><td class='num'>{k}</td><td class='num'>{sk.get('seconds', {}).get(c, 0):.1f} s</td></tr>"
                   for c, k in sk["choices"].items())
    alts = (d["summary"].get("k_alternatives") or {})
    also = ""
    if alts.get("also_supported"):
        def evidence(a: dict[str, Any]) -> str:
            return "; ".join(([f"silhouette {a['silhouette']:.3f}"] if "silhouette" in a else [])
                             + ([f"merge-tree jump ×{a['tree_gap']:.1f}"] if "tree_gap" in a else []))

        items = "".join(f"<li>k = <b>{a['k']}</b>: {evidence(a)} — <code>{escape(a['command'])}</code></li>"
                        for a in alts["also_supported"])
        also = (f'<p><b>Also supported</b> (the chosen k stays {alts["chosen"]}; {escape(alts["rule"])}):</p>'
                f'<ul class="docs">{items}</ul>')
    return (f'<section id="k"><h2>Choosing the number of clusters: k = {sk["k"]}</h2>'
            f'<p>Each criterion was computed on {sk["n_samples_used"]:,} points for k = {ks[0]}…{ks[-1]} without '
            f'using any label. The dashed line marks the chosen k; the red circle, each criterion\'s own choice. '
            f'Rule: {escape(sk["rule"])}.</p>'
            f'<div class="smalls">{"".join(charts)}</div>'
            f'<div class="panel" style="margin-top:12px;display:inline-block"><table><tr><th>criterion</th>'
            f'<th class="num">chosen k</th><th class="num">time</th></tr>{rows}</table></div>{also}</section>')


def _pipeline(d: dict[str, Any]) -> str:
    p = d.get("pipeline")
    if not p:
        return ""
    rows = []
    for c in p["candidates"]:
        won = c["name"] == p["winner"]
        score = "–" if c["score"] is None else f"{c['score']:.3f}"
        why = c.get("skipped") or ("chosen" if won else "")
        rows.append(f"<tr><td>{'<b>' if won else ''}{escape(c['name'])}{'</b>' if won else ''}</td>"
                    f"<td class='num'>{score}</td><td class='num'>{c['seconds']:.1f} s</td><td>{escape(why)}</td></tr>")
    secs = p.get("seconds") or {}
    layout_s = sum(v for key, v in secs.items() if key == "layout" or key.endswith(".layout"))
    reps = ""
    if p.get("representations"):
        best = max((r for r in p["representations"] if r["score"] is not None), key=lambda r: r["score"])
        rrows = "".join(
            f"<tr><td>{'<b>' if r is best else ''}{escape(r['encoder'])}{'</b>' if r is best else ''}</td>"
            f"<td class='num'>{'–' if r['k'] is None else r['k']}</td><td>{escape(r['winner'] or '–')}</td>"
            f"<td class='num'>{'–' if r['score'] is None else format(r['score'], '.3f')}</td>"
            f"<td class='num'>{r['seconds']:.1f} s</td><td>{escape(r['skipped'] or ('chosen' if r is best else ''))}"
            f"</td></tr>" for r in p["representations"])
        reps = ('<p>Each representation chose its own k and pipeline; the one whose winner has the highest '
                'silhouette (each in its own UMAP layout) was kept.</p><div class="panel" style="display:inline-block;'
                'margin-bottom:12px"><table><tr><th>representation</th><th class="num">k</th><th>best pipeline</th>'
                f'<th class="num">silhouette</th><th class="num">time</th><th></th></tr>{rrows}</table></div>')
    return (f'<section id="pipeline"><h2>Choosing the pipeline: {escape(p["winner"])}</h2>{reps}'
            f'<p>Each candidate clustered the features into the chosen number of clusters; no label was used. '
            f'Rule: {escape(p["rule"])}. The UMAP layout{"s" if reps else ""} took {layout_s:.1f} s.</p>'
            f'<div class="panel" style="display:inline-block"><table><tr><th>candidate</th>'
            f'<th class="num">silhouette</th><th class="num">time</th><th></th></tr>{"".join(rows)}</table></div>'
            f'</section>')


def _merge_tree(d: dict[str, Any]) -> str:
    t = d.get("merge_tree")
    if not t or not t.get("linkage"):
        return ""
    rows, n, cut_k = t["linkage"], len(t["clusters"]), t.get("cut_k")
    cut_h = (rows[n - cut_k - 1][2] + rows[n - cut_k][2]) / 2 if cut_k else None  # between the last merge made and the next
    chart = svg.dendrogram(rows, t["clusters"], cut_height=cut_h, title="merge tree of the clusters")
    name = {i: str(c) for i, c in enumerate(t["clusters"])}

    def label(node: float) -> str:
        return name.get(int(node), f"node {int(node)}")

    top = []
    for step in range(len(rows) - 1, max(-1, len(rows) - 16), -1):  # the last 15 merges, top down
        a, b, h = rows[step][:3]
        gap = rows[step + 1][2] / h if step + 1 < len(rows) and h > 0 else None
        top.append(f"<tr><td class='num'>{n - step - 1}</td><td>{escape(label(a))} + {escape(label(b))}</td>"
                   f"<td class='num'>{h:.4g}</td><td class='num'>{_num(gap, 2)}</td></tr>")
    what = (f"The run was cut at k = {cut_k} (dashed line): clusters joined below it form one merged cluster."
            if cut_k else "<code>deepclust merge RUN --k K</code> cuts it at K clusters without refitting.")
    return (f'<section id="tree"><h2>Merge tree of the clusters</h2><p>{escape(t["criterion"])}. {what}</p>'
            f'<div class="panel">{chart}</div><div class="panel" style="margin-top:12px;display:inline-block">'
            '<table><tr><th class="num">clusters left</th><th>merge (cluster or node)</th><th class="num">height</th>'
            f'<th class="num">next merge / this</th></tr>{"".join(top)}</table>'
            '<p class="note">Node i ≥ the number of clusters is the group formed by merge i − k (scipy numbering). '
            'A large ratio means the next merge joins groups much farther apart: a natural level.</p></div></section>')


def _map(d: dict[str, Any]) -> str:
    m = d["map"]
    names = d.get("class_names")
    by_cluster = svg.scatter(m["x"], m["y"], m["cluster"],
                             names={c: f"cluster {c}" if c >= 0 else "noise" for c in set(m["cluster"])},
                             title="coloured by cluster")
    panels = [f'<div class="panel">{by_cluster}</div>']
    if m.get("label") is not None:
        lab_names = {i: names[i] if names and 0 <= i < len(names) else str(i) for i in set(m["label"])}
        panels.append(f'<div class="panel">{svg.scatter(m["x"], m["y"], m["label"], names=lab_names, title="coloured by true label")}</div>')
    sub = f"{len(m['x']):,} of {m['n_total']:,} points" if len(m["x"]) < m["n_total"] else f"all {m['n_total']:,} points"
    return (f'<section id="map"><h2>Map of the embedding</h2><div class="grid2">{"".join(panels)}</div>'
            f'<p class="note">{escape(m["method"])} projection to 2-D of the space the clustering was made in ({sub}). '
            'Distances on such a map are only roughly faithful; use it to see which groups touch.</p></section>')


def _labels(d: dict[str, Any]) -> str:
    c = d.get("confusion")
    if not c:
        return ""
    sc = d["summary"]["scores"]
    cols = [str(x) for x in c["clusters"]]
    return (f'<section id="labels"><h2>Agreement with the known labels</h2>'
            f'<p>ACC {_num(sc.get("acc"))} · NMI {_num(sc.get("nmi"))} · ARI {_num(sc.get("ari"))} · '
            f'AMI {_num(sc.get("ami"))} · purity {_num(sc.get("purity"))}. The labels were used for these scores only.</p>'
            f'<div class="panel">{svg.heatmap(c["matrix"], c["classes"], cols, row_title="class", col_title="cluster (matched order)")}</div>'
            f'<p class="note">Rows: true classes; columns: clusters, ordered by the Hungarian matching (matched pairs on '
            'the diagonal). Colour is the share of the row.</p></section>')


def _sizes(d: dict[str, Any]) -> str:
    cl = d["clusters"]
    chart = svg.bars([c["size"] for c in cl], [f"cluster {c['cluster']}" for c in cl],
                     [svg.color(c["cluster"]) for c in cl], width=520)
    rows = "".join(
        f'<tr><td><a href="#cluster-{c["cluster"]}">cluster {c["cluster"]}</a></td><td class="num">{c["size"]:,}</td>'
        f'<td class="num">{100 * c["share"]:.1f}%</td><td class="num">{_num(c.get("silhouette"))}</td>'
        f'<td class="num">{_num(c["mean_confidence"])}</td><td class="num">{_num(c["spread"], 2)}</td></tr>' for c in cl)
    return (f'<section id="sizes"><h2>Clusters at a glance</h2><div class="grid2"><div class="panel">{chart}</div>'
            f'<div class="panel"><table><tr><th>cluster</th><th class="num">size</th><th class="num">share</th>'
            f'<th class="num">silhouette</th><th class="num">confidence</th><th class="num">spread</th></tr>{rows}</table>'
            '<p class="note">Silhouette: mean over members (higher = better separated). Confidence: mean of the '
            'model\'s top assignment probability. Spread: mean distance to the centroid relative to the whole data '
            'set\'s (lower = tighter).</p></div></div></section>')


def _history(d: dict[str, Any]) -> str:
    h = d.get("history")
    if not h or not isinstance(h, dict):
        return ""
    charts = []
    for phase, records in h.items():
        if not records:
            continue
        epochs = [r.get("epoch", i + 1) for i, r in enumerate(records)]
        keys = [k for k in records[0] if k not in ("epoch", "changed") and isinstance(records[0][k], (int, float))]
        if keys:
            charts.append(f'<div class="panel">{svg.line_chart(epochs, {k: [r.get(k) for r in records] for k in keys}, title=f"{phase}: loss", x_label="epoch", width=340)}</div>')
        if any("changed" in r for r in records):
            charts.append(f'<div class="panel">{svg.line_chart(epochs, {"changed": [r.get("changed") for r in records]}, title=f"{phase}: share of assignments changed", x_label="epoch", width=340)}</div>')
    if not charts:
        return ""
    return (f'<section id="training"><h2>Training</h2><div class="smalls">{"".join(charts)}</div>'
            '<p class="note">Per-epoch means recorded by the method (<code>history_</code>).</p></section>')


def _gallery(uris: list[str], confs: list[float]) -> str:
    return '<div class="gallery">' + "".join(
        f'<figure><img src="{u}" alt="member"><figcaption>{c:.2f}</figcaption></figure>' for u, c in zip(uris, confs)) + "</div>"


def _cluster(c: dict[str, Any]) -> str:
    col = svg.color(c["cluster"])
    title = f'Cluster {c["cluster"]}' + (f' · {escape(c["name"])}' if c.get("name") else "")
    head = (f'<div class="head"><h3>{title}</h3><span class="pill">{c["size"]:,} members · '
            f'{100 * c["share"]:.1f}%</span><span class="pill">silhouette {_num(c.get("silhouette"))}</span>'
            f'<span class="pill">confidence {_num(c["mean_confidence"])}</span>'
            f'<span class="pill">spread {_num(c["spread"], 2)}</span>'
            + (f'<span class="pill">merged from clusters {", ".join(map(str, c["merged_from"]))}</span>'
               if c.get("merged_from") else "") + '</div>')
    body = []
    if c.get("classes"):
        body.append('<div class="sub">Known labels in this cluster</div>' + " ".join(
            f'<span class="pill"><b>{escape(x["label"])}</b> · {100 * x["share"]:.0f}%</span>' for x in c["classes"]))
    if "typical_images" in c:
        body.append('<div class="pair"><div><div class="sub">Most typical members (confidence below)</div>'
                    + _gallery(c["typical_images"], c["typical_confidence"]) + '</div><div><div class="sub">'
                    'Least confident members</div>' + _gallery(c["least_images"], c["least_confidence"]) + "</div></div>")
    if "keywords" in c:
        body.append('<div class="sub">Top keywords (c-TF-IDF)</div>'
                    + "".join(f'<span class="kw">{escape(w)}</span>' for w, _ in c["keywords"]))
        body.append('<div class="sub">Representative documents</div><ul class="docs">'
                    + "".join(f"<li>{escape(t)}</li>" for t in c["documents"]) + "</ul>")
        if c.get("least_documents"):
            body.append('<div class="sub">Least confident documents</div><ul class="docs">'
                        + "".join(f"<li>{escape(t)}</li>" for t in c["least_documents"]) + "</ul>")
    if "rules" in c:
        if c["rules"]:
            rows = "".join(f'<tr><td>{escape(r["text"])}</td><td class="num">{100 * r["precision"]:.0f}%</td>'
                           f'<td class="num">{100 * r["coverage"]:.0f}%</td></tr>' for r in c["rules"])
            body.append('<div class="sub">Rules that describe it (one-vs-rest decision tree, depth ≤ 3)</div>'
                        f'<table class="rules"><tr><th>rule</th><th class="num">precision</th><th class="num">coverage</th></tr>{rows}</table>')
        else:
            body.append('<div class="sub">No short rule separates this cluster well.</div>')
        med = c.get("medoid")
        if med:
            cells = "".join(f'<div class="kv"><span>{escape(k)}</span><b>{v:.4g}</b></div>' for k, v in med["values"].items())
            body.append(f'<div class="sub">Medoid: the most central member (row {med["index"]})</div><div class="kvs">{cells}</div>')
    if c.get("centre"):
        rows = "".join(f'<tr><td>{escape(f["feature"])}</td><td class="num">{f["value"]:.4g}</td>'
                       f'<td class="num">{f["z"]:+.2f}</td></tr>' for f in c["centre"])
        body.append('<div class="sub">Its centre (the model\'s weights): the features where it stands out</div>'
                    '<table class="rules"><tr><th>feature</th><th class="num">centre</th>'
                    f'<th class="num">σ from the mean</th></tr>{rows}</table>')
    if c.get("reasons"):
        items = "".join(
            f'<li>row {r["index"]}: nearer to this centre than to cluster {r["runner_up"]} by {r["margin"]:.4g} '
            '(squared distance); decided by ' + ", ".join(f'{escape(f["feature"])} ({f["contribution"]:+.3g})'
                                                          for f in r["features"]) + "</li>"
            for r in c["reasons"] if r.get("runner_up") is not None)
        if items:
            body.append(f'<div class="sub">Why its most typical members belong to it</div><ul class="docs">{items}</ul>')
    return (f'<div class="cluster" id="cluster-{c["cluster"]}" style="border-left-color:{col}">{head}'
            + "".join(body) + "</div>")


def render_html(d: dict[str, Any]) -> str:
    """The report page for report data ``d`` (see :func:`deepclust.report.collect_report_data`)."""
    s = d["summary"]
    title = f"deepclust report — {s.get('dataset')}"
    sections = [_overview(d), _select_k(d), _pipeline(d), _merge_tree(d), _map(d), _labels(d), _sizes(d), _history(d),
                '<section id="clusters"><h2>Cluster by cluster</h2>' + "".join(_cluster(c) for c in d["clusters"])
                + "</section>"]
    nav_items = [("overview", "Overview"), ("k", "Choosing k"), ("pipeline", "Pipeline"), ("tree", "Merge tree"), ("map", "Map"), ("labels", "Labels"),
                 ("sizes", "Sizes"), ("training", "Training"), ("clusters", "Clusters")]
    html_body = "".join(sections)
    nav = "".join(f'<a href="#{a}">{t}</a>' for a, t in nav_items if f'id="{a}"' in html_body)
    k = s.get("n_clusters_found") or s.get("n_clusters")
    sub = (f"{s.get('method')} · {s.get('encoder')} encoder · {s.get('n_samples'):,} {s.get('modality')} samples · "
           f"k = {k}")
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1"><title>{escape(title)}</title>'
            f'<style>{CSS}</style></head><body><header><div class="wrap"><h1>{escape(title)}</h1>'
            f'<p>{escape(sub)}</p></div></header><nav><div class="wrap">{nav}</div></nav>'
            f'<main class="wrap">{html_body}</main><footer class="wrap">Generated by deepclust '
            f'{escape(str((s.get("versions") or {}).get("deepclust", "")))}. This file is self-contained: it loads '
            'nothing from the network.</footer></body></html>')

"""HTML rendering of a validated report dict: one self-contained page (inline CSS, plots as
base64 PNG, no external requests). Numbers are printed with `fmt`, which tests rely on."""

from __future__ import annotations

import html

from . import plots
from .metrics import higher_is_better


def truncate_text(v, n: int = 500):
    """Strings longer than n characters are cut, with a note of how much was dropped."""
    return v if not isinstance(v, str) or len(v) <= n else v[:n] + f"… [{len(v) - n} more chars]"


CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,'Noto Sans CJK SC',sans-serif;margin:24px auto;
max-width:1100px;color:#1d2330;padding:0 16px}
h1{margin-bottom:4px}h2{border-bottom:2px solid #e3e7ef;padding-bottom:4px;margin-top:32px}
.meta{color:#667}table{border-collapse:collapse;margin:8px 0 16px;font-size:14px}
th,td{border:1px solid #d8dde8;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f3f5f9}td.n{text-align:right;font-variant-numeric:tabular-nums}
.good{color:#137333;font-weight:600}.bad{color:#b3261e;font-weight:600}
.flag{display:inline-block;padding:2px 8px;border-radius:10px;font-weight:600}
.flag.ok{background:#e6f4ea;color:#137333}.flag.warn{background:#fce8e6;color:#b3261e}
img{max-width:100%;border:1px solid #eee;margin:6px 0}
pre{white-space:pre-wrap;background:#f7f8fa;padding:8px;font-size:12px;max-height:320px;overflow:auto}
.cell{max-width:320px;white-space:pre-wrap;word-break:break-word;font-size:12px}
"""


def fmt(v, digits: int = 2) -> str:
    """How numbers are printed in the report (tests look for these strings)."""
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return f"{v:.{digits}f}" if abs(v) < 1e6 else f"{v:.3g}"
    return html.escape(str(v))


def delta_cell(metric: str, d) -> str:
    if not isinstance(d, (int, float)):
        return '<td class="n">–</td>'
    cls = "" if d == 0 else ("good" if (d > 0) == higher_is_better(metric) else "bad")
    return f'<td class="n {cls}">{"+" if d > 0 else ""}{fmt(d)}</td>'


def _table(headers, rows) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _img(b64: str, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{b64}">'


def _generation_html(r: dict) -> str:
    gen = r.get("generation") or {}
    if not gen:
        return ""
    labels = list(gen)
    metrics = sorted({m for g in gen.values() for m in g["metrics"]})
    ba = r.get("before_after") or {}
    delta = ba.get("delta", {})
    headers = ["metric", *labels] + (["Δ (tuned − base)"] if ba else [])
    rows = []
    for m in metrics:
        cells = "".join(f'<td class="n" data-key="{html.escape(lbl)}.{m}">{fmt(gen[lbl]["metrics"].get(m))}</td>'
                        for lbl in labels)
        rows.append(f"<tr><td>{m}</td>{cells}{delta_cell(m, delta.get(m)) if ba else ''}</tr>")
    sizes = ", ".join(f"{html.escape(lbl)}: {gen[lbl]['n']}" for lbl in labels)
    lang = html.escape(gen[labels[0]]["language"])
    out = ["<h2>Generation metrics</h2>",
           f'<p class="meta">n = {sizes}; language: {lang}; text metrics 0–100.</p>', _table(headers, rows)]
    bars = {lbl: {m: v for m, v in g["metrics"].items() if m != "perplexity" and v is not None} for lbl, g in gen.items()}
    if any(bars.values()):
        out.append(_img(plots.grouped_bars(bars, "Generation metrics"), "generation metrics"))
    eff_keys = ["latency_p50_s", "latency_p95_s", "ttft_p50_s", "ttft_p95_s", "tokens_per_s",
                "generated_tokens", "peak_memory_mb"]
    eff_delta = ba.get("efficiency_delta", {})
    rows = []
    for k in eff_keys:
        cells = "".join(f'<td class="n">{fmt(gen[lbl]["efficiency"].get(k), 3)}</td>' for lbl in labels)
        rows.append(f"<tr><td>{k}</td>{cells}{delta_cell(k, eff_delta.get(k)) if ba else ''}</tr>")
    kind = gen[labels[0]]["efficiency"].get("memory_kind")
    out += ["<h2>Efficiency</h2>", f'<p class="meta">memory: {html.escape(str(kind))}</p>', _table(headers, rows)]
    return "".join(out)


def _probes_html(r: dict) -> str:
    p = r.get("probes")
    if not p:
        return ""
    out = ["<h2>Probes</h2>"]
    f = p.get("forgetting")
    if f:
        cls, word = ("warn", "FORGETTING: general ability damaged") if f["damaged"] else ("ok", "No forgetting detected")
        out.append(f'<p><span class="flag {cls}">{word}</span> general pass rate {fmt(f["base_pass_rate"])} → '
                   f'{fmt(f["tuned_pass_rate"])} (Δ {fmt(f["delta"])}, threshold {fmt(f["threshold"])}); '
                   f'regressed: {html.escape(", ".join(f["regressed_items"]) or "none")}</p>')
    for kind in ("general", "safety"):
        res = p.get(kind) or {}
        if not res:
            continue
        labels = list(res)
        cats = sorted({c for x in res.values() for c in x["by_category"]})
        cells = "".join(f'<td class="n">{fmt(res[lbl]["pass_rate"])} ({res[lbl]["passed"]}/{res[lbl]["n"]})</td>'
                        for lbl in labels)
        rows = [f"<tr><td><b>all</b></td>{cells}</tr>"]
        for c in cats:
            cells = "".join(f'<td class="n">{fmt(res[lbl]["by_category"].get(c, {}).get("pass_rate"))}</td>' for lbl in labels)
            rows.append(f"<tr><td>{html.escape(c)}</td>{cells}</tr>")
        out += [f"<h3>{kind.capitalize()} probes — pass rate</h3>", _table(["category", *labels], rows)]
        last = labels[-1]
        failed = [i for i in res[last]["items"] if not i["passed"]][:10]
        if failed:
            frows = [f'<tr><td>{html.escape(i["id"])}</td><td class="cell">{html.escape(truncate_text(i["prediction"], 200))}</td>'
                     f'<td class="cell">{html.escape("; ".join(i["failures"]))}</td></tr>' for i in failed]
            out.append(f"<details><summary>failed {kind} probes ({last}, first 10)</summary>"
                       + _table(["id", "answer", "failed rules"], frows) + "</details>")
    return "".join(out)


def _training_html(r: dict) -> str:
    t = r.get("training")
    out = []
    if t:
        s = t["series"]
        loss = {k: v for k, v in s.items() if k in ("loss", "eval_loss", "train_loss")}
        out.append("<h2>Training</h2>")
        if loss:
            out.append(_img(plots.line_plot(loss, "Train / validation loss", "loss"), "loss curves"))
        gen = {k: v for k, v in s.items() if k.startswith("eval_gen_")}
        if gen:
            out.append(_img(plots.metrics_over_steps(gen), "metrics over steps"))
        if t.get("best"):
            b = t["best"]
            out.append(f'<p>Best checkpoint by {html.escape(b["metric"])}: step {fmt(b["step"])} '
                       f'(value {fmt(b["value"])})</p>')
        rows = [f'<tr><td>{html.escape(k)}</td><td class="n">{fmt(v, 4)}</td></tr>' for k, v in t["final"].items()]
        out.append(_table(["last logged", "value"], rows))
    cm = r.get("confusion_matrix")
    if cm:
        out += ["<h2>Confusion matrix</h2>", _img(plots.confusion_matrix_plot(cm["labels"], cm["matrix"]), "confusion matrix")]
    return "".join(out)


def _errors_html(r: dict) -> str:
    errs = r.get("errors")
    if not errs:
        return ""
    out = ["<h2>Error library</h2>"]
    for label, e in errs.items():
        files = ", ".join(f"{html.escape(m)}: <code>{html.escape(p)}</code>" for m, p in e.get("files", {}).items())
        out.append(f"<h3>{html.escape(label)}</h3><p class='meta'>worst-{e.get('k')} per metric in {files}</p>")
        for facet, values in (e.get("facets") or {}).items():
            metrics = sorted({m for s in values.values() for m in s["mean"]})
            rows = [f"<tr><td>{html.escape(v)}</td><td class='n'>{s['n']}</td>"
                    + "".join(f"<td class='n'>{fmt(s['mean'].get(m))}</td>" for m in metrics) + "</tr>"
                    for v, s in sorted(values.items())]
            out.append(f"<p>By {html.escape(facet)}:</p>" + _table([facet, "n", *metrics], rows))
        for metric, rows in list((e.get("worst") or {}).items())[:3]:
            trs = [f"<tr><td class='n'>{x['rank']}</td><td class='cell'>{html.escape(str(x['input']))}</td>"
                   f"<td class='cell'>{html.escape(str(x['reference']))}</td><td class='cell'>{html.escape(str(x['prediction']))}</td>"
                   f"<td class='n'>{fmt(x['scores'].get(metric))}</td></tr>" for x in rows[:3]]
            out.append(f"<details><summary>worst by {html.escape(metric)}</summary>"
                       + _table(["#", "input", "reference", "prediction", metric], trs) + "</details>")
    return "".join(out)


def _extras_html(r: dict) -> str:
    out = []
    st = r.get("stability")
    if st:
        rows = [f"<tr><td>{html.escape(k)}</td><td class='n'>{fmt(v['mean'])}</td><td class='n'>{fmt(v['std'])}</td>"
                f"<td class='n'>{v['n']}</td></tr>" for k, v in st["metrics"].items()]
        out += [f"<h2>Stability over {st['n_runs']} seeds</h2>", _table(["metric", "mean", "std", "runs"], rows)]
    hu = r.get("human")
    if hu:
        crit = list(hu["overall"])
        rows = [f"<tr><td>{html.escape(m)}</td>" + "".join(f"<td class='n'>{fmt(cs.get(c, {}).get('mean'))}</td>" for c in crit) + "</tr>"
                for m, cs in hu["by_model"].items()]
        rows.append("<tr><td><b>all</b></td>" + "".join(
            f"<td class='n'>{fmt(hu['overall'][c]['mean'])}</td>" for c in crit) + "</tr>")
        rows.append("<tr><td><b>agreement (κ quadratic)</b></td>"
                    + "".join(f"<td class='n'>{fmt(hu['agreement'][c]['kappa_quadratic'])}</td>" for c in crit) + "</tr>")
        out += [f"<h2>Human evaluation ({hu['n_ratings']} ratings, {len(hu['raters'])} raters)</h2>",
                _table(["model", *crit], rows)]
    cfg = (r.get("run") or {}).get("config")
    if cfg:
        import yaml

        out.append("<h2>Config</h2><details><summary>config.yaml</summary><pre>"
                   + html.escape(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True)) + "</pre></details>")
    return "".join(out)


def _summary_html(r: dict) -> str:
    """One line per headline finding: best-checkpoint, forgetting flag, safety pass rate."""
    items = []
    ba = r.get("before_after")
    if ba:
        better = sum(ba["improved"].values())
        items.append(f"{html.escape(ba['candidate'])} vs {html.escape(ba['baseline'])}: "
                     f"{better} of {len(ba['improved'])} metrics improved")
    f = ((r.get("probes") or {}).get("forgetting"))
    if f:
        cls, word = ("warn", "forgetting flagged") if f["damaged"] else ("ok", "no forgetting")
        items.append(f'<span class="flag {cls}">{word}</span> general probes {fmt(f["base_pass_rate"])} → '
                     f'{fmt(f["tuned_pass_rate"])}')
    for label, p in ((r.get("probes") or {}).get("safety") or {}).items():
        items.append(f"safety probes ({html.escape(label)}): pass rate {fmt(p['pass_rate'])}")
    best = (r.get("training") or {}).get("best")
    if best:
        items.append(f"best checkpoint: step {fmt(best['step'])} by {html.escape(best['metric'])} = {fmt(best['value'])}")
    if not items:
        return ""
    return "<h2>Summary</h2><ul>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>"


def render_html(report: dict) -> str:
    """The self-contained HTML page for a validated report dict."""
    run = report["run"]
    head = "".join(f"<tr><td>{html.escape(k)}</td><td class='n' data-key='{html.escape(k)}'>{fmt(v)}</td></tr>"
                   for k, v in report.get("headline", {}).items())
    body = [f"<h1>tunesmith report — {html.escape(run['name'])}</h1>",
            f"<p class='meta'>{html.escape(run['created_at'])} · {html.escape(run['dir'])}</p>",
            _summary_html(report), _generation_html(report), _probes_html(report),
            _training_html(report), _errors_html(report), _extras_html(report),
            "<h2>All key numbers</h2><details><summary>headline (as in report.json)</summary>"
            + (_table(["key", "value"], [head]) if head else "<p>No metrics.</p>") + "</details>"]
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>tunesmith report — {html.escape(run['name'])}</title><style>{CSS}</style></head>"
            f"<body>{''.join(body)}</body></html>")

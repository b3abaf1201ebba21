"""`write_report`: one readable HTML page (report.html) with PNG figures beside it."""

from __future__ import annotations

import html
import io
from pathlib import Path

from analysis.options import FitOptions, resolve
from analysis.result import coverage_text, seed_summary
from vla_core.atomic import write_atomic
from vla_core.errors import BadInput


def resolve_results(path) -> Path:
    """A results file, or the results.csv / results.parquet inside a sweep directory."""
    p = Path(path)
    if p.is_dir():
        for name in ("results.csv", "results.parquet"):
            if (p / name).is_file():
                return p / name
        raise BadInput(f"{p}: a directory without results.csv or results.parquet (export the sweep first)")
    if not p.is_file():
        raise BadInput(f"{p}: no such results file or sweep directory")
    return p


def _budgets(tbl):
    """The sweep's own IsoFLOP budget column when every kept run has one, else None (group by compute)."""
    import pandas as pd

    if tbl.frame is None or "budget" not in tbl.frame.columns:
        return None
    b = pd.to_numeric(tbl.frame["budget"], errors="coerce").to_numpy(float)
    return b if b.size == tbl.n and (b > 0).all() else None


def _save(ax, out_dir: Path, name: str) -> str:
    buf = io.BytesIO()
    ax.figure.savefig(buf, format="png", dpi=110)
    write_atomic(out_dir / name, buf.getvalue())
    return name


def _app_table(apps, fit) -> str:
    """Approaches 1, 2 and 3 side by side: a with its interval, whether the data meets each one's assumptions."""
    e = html.escape
    cmp = fit.approaches or {}
    names = {"1": "1 (envelope of lowest loss per compute)", "2": "2 (IsoFLOP parabolas, windowed)",
             "3": "3 (parametric fit)"}
    rows = []
    for key, app in sorted(cmp.get("approaches", {}).items()):
        a = app.get("a")
        rows.append(f"<tr><td>{names.get(key, key)}</td><td>{'' if a is None else f'{a:.3f}'}</td>"
                    f"<td>{_ci(app.get('ci'))}</td><td>{'yes' if app.get('assumptions_met') else '<b>no</b>'}</td>"
                    f"<td style='text-align:left'>{e(str(app.get('why', '')))}</td></tr>")
    if not rows:  # a fit written before approaches were compared
        rows = [f"<tr><td>{app.approach}</td><td>{app.a:.3f}</td><td></td><td></td><td></td></tr>"
                for app in apps if app.flops.size >= 2]
    verdict = ""
    if cmp:
        agree = ("The approaches agree (their 95% intervals overlap)." if cmp.get("agree")
                 else "<b>The approaches do not agree.</b>")
        verdict = f"<p>{agree} {e(str(cmp.get('trust', '')))}</p>"
    return ("<table><tr><th>approach</th><th>a (N_opt ~ C^a)</th><th>95% interval</th><th>assumptions met</th>"
            "<th>why</th></tr>" + "".join(rows) + "</table>" + verdict)


def _success_html(fit) -> str:
    """The success-rate laws as a short table (empty without success rates)."""
    sec = fit.success
    if sec is None or not sec.vs_compute:
        return ""
    rows = []
    for part, label, unit in (("vs_compute", "compute", "log10 FLOPs"), ("vs_loss", "loss", "loss")):
        sp = getattr(sec, part)
        p, ci, bt = sp.params, sp.ci or {}, sp.backtest or {}
        bt_txt = f"{100 * bt['mae']:.1f} / {100 * bt['max_err']:.1f}" if bt else "not run"
        rows.append(f"<tr><td>{label}</td><td>{p['mid']:.4g} {_ci(ci.get('mid'))} ({unit})</td>"
                    f"<td>{p['slope']:.3g} {_ci(ci.get('slope'))}</td>"
                    f"<td>{p['ceiling']:.3g} {_ci(ci.get('ceiling'))}</td>"
                    f"<td>{100 * sp.rmse:.1f}</td><td>{bt_txt}</td></tr>")
    return ("<h2>Success rate</h2><p>Logistic law s = floor + (ceiling - floor) / (1 + exp(-slope (u - mid))), "
            f"u = log10 C or -L, floor {sec.floor:.3g} (the blind baseline's success, else 0); "
            "95% bootstrap intervals; backtest: refit without the top 20% of compute, predict it.</p>"
            "<table><tr><th>against</th><th>mid</th><th>slope</th><th>ceiling</th><th>rmse (points)</th>"
            "<th>backtest mean / max error (points)</th></tr>" + "".join(rows) + "</table>")


def _ci(c) -> str:
    return f"[{c[0]:.4g}, {c[1]:.4g}]" if c else ""


def _validation_html(raw) -> str:
    """Did the recommendation hold: the validation rounds of the table (empty without any)."""
    from analysis.validation import summarize

    if raw is None:
        return ""
    rounds = summarize(raw)
    if not rounds:
        return ""
    e = html.escape
    parts = ["<h2>Validation: did the recommendation hold?</h2><p>Each round was predicted before it ran "
             "(`scaling sweep validate` wrote the prediction into the spec): the recommended size and alternatives "
             "at the same compute, never fitted.</p>"]
    for r in rounds:
        verdict = "won" if r["recommended_won"] else "did <b>not</b> win"
        parts.append(f"<h3>C = {r['budget']:.3g} FLOPs: the recommended size {verdict}"
                     + (f" (mean {r['margin']:+.4f} against the best alternative, "
                        + ("with one seed per size" if r.get("decisive") is None else
                           f"{'beyond' if r['decisive'] else '<b>within</b>'} the seed noise, sd {r['seed_sd']:.4f}")
                        + ")" if r["margin"] is not None else "")
                     + f"; the printed interval covered {r['covered']} of {r['runs']} runs</h3>")
        rows = "".join(
            f"<tr><td>{e(x['size'])}{' (recommended)' if x['recommended'] else ''}</td><td>{x['n_params']:,}</td>"
            f"<td>{x['samples']:,}</td><td>{', '.join(f'{v:.4f}' for v in x['losses'])}</td><td>{x['mean']:.4f}</td>"
            f"<td>{x['predicted_loss']:.4f} [{x['predicted_lo']:.4f}, {x['predicted_hi']:.4f}]</td>"
            f"<td>{x['covered']} of {len(x['losses'])}</td></tr>" for x in r["sizes"])
        parts.append("<table><tr><th>size</th><th>N</th><th>D</th><th>loss per seed</th><th>mean</th>"
                     "<th>predicted [95%]</th><th>covered</th></tr>" + rows + "</table>")
    return "".join(parts)


def _pair_html(pair) -> str:
    """The law with its floor free beside the law with the floor held at the data's known loss floor."""
    if pair is None:
        return ""
    e = html.escape
    names = list(pair.free.params)
    rows = "".join(f"<tr><td>{e(k)}</td><td>{pair.free.params[k]:.4g} {_ci(pair.free.ci.get(k))}</td>"
                   f"<td>{pair.floored.params[k]:.4g} {_ci(pair.floored.ci.get(k))}</td></tr>" for k in names)
    for k in ("a", "b"):
        if pair.free.exponents.get(k) is not None:
            rows += (f"<tr><td>{k}</td><td>{pair.free.exponents[k]:.4g} {_ci(pair.free.ci.get(k))}</td>"
                     f"<td>{pair.floored.exponents[k]:.4g} {_ci(pair.floored.ci.get(k))}</td></tr>")
    bt = [(p.backtest or {}) for p in (pair.free, pair.floored)]  # a Backtest reads as its JSON object
    rows += "<tr><td>backtest mean / max error</td>" + "".join(
        f"<td>{100 * b['are_mean']:.2f}% / {100 * b['are_max']:.2f}%</td>" if b.get("are_mean") is not None
        else "<td>skipped</td>" for b in bt[:2]) + "</tr>"
    opt = [(p.optimum or {}) for p in (pair.free, pair.floored)]
    if all(opt[:2]):
        rows += "<tr><td>N_opt at the largest compute</td>" + "".join(
            f"<td>{o['n_opt']:.3g} {_ci(o['ci'].get('n_opt'))}</td>" for o in opt[:2]) + "</tr>"
    return (f"<h2>Known loss floor: E free against E held at {pair.floored.loss_floor:.4g}</h2>"
            f"<p>{e(pair.verdict)}.</p><table><tr><th></th><th>E free</th><th>E at the floor</th></tr>{rows}</table>")


def _extrapolation_txt(opt: dict) -> str:
    from analysis.allocation import extrapolation_text

    ex = opt.get("extrapolation")
    return " ".join(extrapolation_text(ex)) + "." if ex else ""


def write_report(table_or_path, out_dir, *, options: FitOptions | None = None, fit=None, families=None,
                 **overrides) -> Path:
    """Fit the table and write report.html plus its PNG figures into `out_dir`.

    A table of several model families (its ``family`` column) is fitted family by family and reported
    as such (`analysis.families`): each family's law and curves, and which family scales better.

    Args:
        table_or_path: DataFrame, results file, or sweep directory holding results.csv.
        out_dir: output directory (created).
        options, overrides: how to fit, as in `analysis.fit` (`analysis.options.FitOptions`). Its
            `loss_floor` is the data's known lower bound on the loss, for a table without a `loss_floor`
            column; when one is known the report also fits the law with E held at it and says which
            backtests better.
        fit: an existing `FitResult` to report instead of fitting again.
        families: an existing `analysis.families.FamilyFits` of a table of several families, to report
            instead of fitting again.

    Returns:
        Path of report.html.
    """
    from analysis.table import families_in, read_frame

    o = resolve(options, **overrides)
    src = table_or_path if hasattr(table_or_path, "columns") else resolve_results(table_or_path)
    raw = src if hasattr(src, "columns") else read_frame(src)[0]
    if families is not None or len(families_in(raw)) > 1:
        return _write_families_report(raw, str(src) if not hasattr(src, "columns") else None, Path(out_dir),
                                      families, o)
    fit, tbl, pair = _fit_for_report(src, o, fit)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fit.save(out / "fit.json")
    figs, apps, extra_warn = _figures(tbl, fit, out)
    return write_atomic(out / "report.html", _page(fit, tbl, raw, pair, figs, apps, extra_warn))


def _fit_for_report(src, o: FitOptions, fit):
    """(the fit to report, its table, the free / floored pair or None): the pair when the loss floor is known
    and the law has a floor; the fit is then the pair's free one, unless one was given."""
    from analysis.forms import get_form
    from analysis.table import load_table
    from analysis.workflow import fit as run_fit
    from analysis.workflow import fit_pair, known_loss_floor

    form = o.form if fit is None else fit.form
    f = get_form(form)
    tbl = load_table(src, need=f.columns, n_params=len(f.params), **o.columns)
    floor, _ = known_loss_floor(tbl, o.loss_floor)
    pair = None
    if floor is not None and f.floor is not None:
        pair = fit_pair(tbl, options=o.replace(form=form, loss_floor=floor))
    if fit is None:
        fit = pair.free if pair is not None else run_fit(tbl, options=o)
    return fit, tbl, pair


def _figures(tbl, fit, out: Path) -> tuple[list, list, list[str]]:
    """The report's figures written into `out` as (title, file name), Approaches 1 and 2 of the runs, and
    their warnings."""
    from analysis import plots
    from analysis.approaches import approach1, approach2

    figs, apps, extra_warn = [], [], []
    if "N" in tbl.cols and "D" in tbl.cols:
        C = tbl.compute
        a1 = approach1(tbl.cols["N"], tbl.cols["D"], tbl.loss, C)
        a2 = approach2(tbl.cols["N"], tbl.cols["D"], tbl.loss, C, budget=_budgets(tbl), k=tbl.k)
        apps = [a for a in (a1, a2) if a.flops.size]
        extra_warn = a1.warnings + a2.warnings
        figs.append(("Loss against compute", _save(plots.loss_vs_compute(tbl, fit), out, "loss_vs_compute.png")))
        figs.append(("Loss against N", _save(plots.loss_vs_n(tbl, fit), out, "loss_vs_n.png")))
        figs.append(("Loss against D", _save(plots.loss_vs_d(tbl, fit), out, "loss_vs_d.png")))
        if a2.curves:
            figs.append(("IsoFLOP curves", _save(plots.isoflops(a2), out, "isoflops.png")))
        if fit.exponents.get("a") is not None:
            ax = plots.optimal_vs_compute(fit, (C.min(), C.max() * 100),
                                          [(a, "o" if a.approach == 1 else "^") for a in apps])
            figs.append(("Compute-optimal allocation", _save(ax, out, "optimal.png")))
    if fit.success is not None and fit.success.vs_compute:
        figs.append(("Success rate against compute",
                     _save(plots.success(tbl, fit, "compute"), out, "success_vs_compute.png")))
        figs.append(("Success rate against loss", _save(plots.success(tbl, fit, "loss"), out, "success_vs_loss.png")))
    figs.append(("Observed against predicted",
                 _save(plots.observed_vs_predicted(tbl, fit), out, "observed_vs_predicted.png")))
    figs.append(("Residuals", _save(plots.residuals(tbl, fit), out, "residuals.png")))
    return figs, apps, extra_warn


def _page(fit, tbl, raw, pair, figs, apps, extra_warn) -> str:
    """report.html of one fit."""
    two_var = "N" in tbl.cols and "D" in tbl.cols
    e = html.escape
    se = fit.stderr or {}
    params = "".join(f"<tr><td>{e(k)}</td><td>{v:.5g}</td><td>{_se(se.get(k))}</td><td>{_ci(fit.ci.get(k))}</td></tr>"
                     for k, v in {**fit.params, **{k: v for k, v in fit.exponents.items() if v is not None}}.items())
    warn = "".join(f"<li>{e(w)}</li>" for w in fit.warnings + extra_warn) or "<li>none</li>"
    notes = "".join(f"<li>{e(n)}</li>" for n in fit.notes)
    bt_txt = _backtest_txt(fit.backtest)
    pct = coverage_text(fit.bootstrap.level if fit.bootstrap is not None else None)
    opt = fit.optimum or {}
    opt_txt = (f"At C = {opt['flops']:.3g} FLOPs: N_opt = {opt['n_opt']:.3g} {_ci(opt['ci'].get('n_opt'))}, D_opt = "
               f"{opt['d_opt']:.3g} {_ci(opt['ci'].get('d_opt'))}, loss {opt['loss']:.4g} {_ci(opt['ci'].get('loss'))} "
               + (f"(at {opt['flops_per_sample']:.3g} FLOPs per sample, what a model of that size costs)."
                  if opt.get("flops_per_sample") else
                  f"(k = {fit.k:.3g} FLOPs per parameter per sample{'' if fit.k_measured else ', assumed'}).")
               if opt else "")
    apps_html = _app_table(apps, fit) if two_var else ""
    body = f"""<!doctype html><html><head><meta charset="utf-8"><title>Scaling-law report</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}img{{max-width:49%;vertical-align:top}}
.warn{{color:#a40}}</style></head><body>
<h1>Scaling-law report</h1>
<p>Source: {e(fit.source)}. {fit.n_points} runs. Form: <b>{e(fit.form)}</b>. Summed Huber objective
(delta 1e-3, log loss): {fit.huber:.4e}. Intervals: {pct} percentile bootstrap over runs
({fit.bootstrap.n if fit.bootstrap is not None else 0} resamples). Standard errors: from the curvature of the
objective at the optimum ({e(_se_method(fit.covariance))}).</p>
<h2>Parameters</h2><table><tr><th>name</th><th>value</th><th>std. error</th><th>{pct} interval</th></tr>{params}</table>
<h2>Warnings</h2><ul class="warn">{warn}</ul>{('<h3>Notes</h3><ul>' + notes + '</ul>') if notes else ''}
<h2>Backtest</h2><p>{bt_txt}</p>
<h2>Compute-optimal allocation</h2><p>{opt_txt} {e(_extrapolation_txt(opt))}</p>{apps_html}
{_pair_html(pair)}
{_validation_html(raw)}
{_success_html(fit)}
<h2>Figures</h2>{''.join(f'<img src="{n}" alt="{e(t)}" title="{e(t)}">' for t, n in figs)}
</body></html>
"""
    return body


def _backtest_txt(bt) -> str:
    """The backtest in a sentence or two (HTML-escaped)."""
    if bt is None:
        return "not run"
    if bt.are_mean is None:
        return html.escape(str(bt.skipped or "not run"))
    txt = (f"Refit without the {bt.holdout} largest-compute runs, then predicting them: mean absolute relative "
           f"error {100 * bt.are_mean:.2f}%, max {100 * bt.are_max:.2f}%.")
    if seeds := seed_summary(bt):
        txt += f" {seeds[0].upper()}{seeds[1:]}."
    return txt


def _se(v) -> str:
    return "" if v is None else f"{v:.3g}"


def _se_method(cov) -> str:
    """How the standard errors were computed, which parameters they hold, or why there are none."""
    if cov is None:
        return "not computed"
    if cov.why is not None:
        return f"not computed: {cov.why}"
    held = (f"; {', '.join(cov.at_edge)} at an edge of its domain, held: the others' errors take it as known and "
            "so understate the uncertainty, which the interval column does not" if cov.at_edge else "")
    return f"{cov.method}{held}"


def _families_html(comparison: dict) -> str:
    """"Which family scales better": each exponent per family, the difference with its interval and
    p-value, and the verdict."""
    e = html.escape
    c = comparison
    level = f"{100 * c['level']:.0f}%"
    rows = []
    for d in c["differences"]:
        ci = d["ci"]
        fam_ci = c["families"][d["family"]]["ci"].get(d["exponent"])
        ref_ci = c["families"][d["reference"]]["ci"].get(d["exponent"])
        if not d["determined"]:
            verdict = "no verdict (an exponent at an edge of its domain)"
        elif ci is None:
            verdict = "not tested (no bootstrap)"
        elif d["beyond_noise"]:
            verdict = f"<b>beyond the noise</b>: {e(d['better'])} scales better"
        else:
            verdict = "within the noise"
        p = d["p_value"]
        p_txt = "" if p is None else (f"&lt; {2 / d['n']:.2g}" if p == 0 else f"{p:.2g}")
        rows.append(f"<tr><td>{e(d['exponent'])}{' (' + e(d['variable']) + ')' if d['variable'] else ''}</td>"
                    f"<td>{e(d['family'])}: {d['family_value']:.4g} {_ci(fam_ci)}</td>"
                    f"<td>{e(d['reference'])}: {d['reference_value']:.4g} {_ci(ref_ci)}</td>"
                    f"<td>{d['value']:+.4g}</td><td>{_ci(ci)}</td><td>{p_txt}</td><td>{verdict}</td></tr>")
    warn = "".join(f"<li>{e(w)}</li>" for w in c["warnings"])
    return (f"<h2>Which family scales better</h2><p>{e(c['verdict'])}</p>"
            f"<p>Each family fitted on its own runs ({e(c['form'])} law). The difference of an exponent is read off "
            f"the two fits' bootstrap refits (runs resampled within each family, independently); {level} percentile "
            "interval and a two-sided bootstrap p-value. A larger exponent: a loss that falls faster with that "
            "variable over the runs' range.</p>"
            f"<table><tr><th>exponent</th><th>family [{level}]</th><th>reference [{level}]</th>"
            f"<th>difference (family - reference)</th><th>{level} interval</th><th>p</th><th>verdict</th></tr>"
            + "".join(rows) + "</table>"
            + (f"<ul class='warn'>{warn}</ul>" if warn else ""))


def _family_section(name: str, fit) -> str:
    """One family's law: parameters with intervals, backtest, compute-optimal choice, warnings."""
    e = html.escape
    params = "".join(f"<tr><td>{e(k)}</td><td>{v:.5g}</td><td>{_ci(fit.ci.get(k))}</td></tr>"
                     for k, v in {**fit.params, **{k: v for k, v in fit.exponents.items() if v is not None}}.items())
    bt = fit.backtest
    bt_txt = (f"backtest (refit without the {bt.holdout} largest-compute runs, predict them): mean |rel. error| "
              f"{100 * bt.are_mean:.2f}%, max {100 * bt.are_max:.2f}%." if bt is not None and bt.are_mean is not None
              else f"backtest: {e(str((bt.skipped if bt is not None else None) or 'not run'))}.")
    opt = fit.optimum or {}
    opt_txt = (f" At C = {opt['flops']:.3g} FLOPs: N_opt = {opt['n_opt']:.3g} {_ci(opt['ci'].get('n_opt'))}, "
               f"D_opt = {opt['d_opt']:.3g} {_ci(opt['ci'].get('d_opt'))}." if opt else "")
    blind = (fit.observed or {}).get("blind_loss")
    blind_txt = f" Its blind baseline (same model, images and instruction withheld): loss {blind:.4g}." if blind else ""
    warn = "".join(f"<li>{e(w)}</li>" for w in fit.warnings) or "<li>none</li>"
    return (f"<h3>{e(name)}: {fit.n_points} runs</h3><table><tr><th>name</th><th>value</th><th>95% interval</th></tr>"
            f"{params}</table><p>{bt_txt}{opt_txt}{blind_txt}</p><ul class='warn'>{warn}</ul>")


def _write_families_report(raw, source: str | None, out: Path, families, o: FitOptions) -> Path:
    """report.html of a table of several model families: both families' curves (loss against N at the
    largest D, against D at the largest N), each family's law, and which one scales better."""
    from analysis import plots
    from analysis.families import file_slug, fit_by_family
    from analysis.forms import get_form
    from analysis.table import family_column, load_table

    if families is None:
        families = fit_by_family(raw, options=o, source=source)
    out.mkdir(parents=True, exist_ok=True)
    families.save(out / "families.json")
    f = get_form(families.comparison["form"])
    fam = family_column(raw)
    tables = {name: load_table(raw[fam == name].reset_index(drop=True), need=f.columns, n_params=len(f.params),
                               **o.columns)
              for name in families.fits}
    fits = families.fits
    figs = []
    if "N" in f.columns and "D" in f.columns:
        figs.append(("Loss against N at the largest D, per family",
                     _save(plots.families_vs(tables, fits, "N"), out, "families_vs_n.png")))
        figs.append(("Loss against D at the largest N, per family",
                     _save(plots.families_vs(tables, fits, "D"), out, "families_vs_d.png")))
    figs.append(("Loss against compute, per family", _save(plots.families_vs_compute(tables), out,
                                                           "families_vs_compute.png")))
    for name, tbl in tables.items():
        slug = file_slug(name)
        if "N" in f.columns and "D" in f.columns:
            figs.append((f"{name}: loss against N",
                         _save(plots.loss_vs_n(tbl, fits[name]), out, f"loss_vs_n_{slug}.png")))
            figs.append((f"{name}: loss against D",
                         _save(plots.loss_vs_d(tbl, fits[name]), out, f"loss_vs_d_{slug}.png")))
        figs.append((f"{name}: observed against predicted",
                     _save(plots.observed_vs_predicted(tbl, fits[name]), out, f"observed_vs_predicted_{slug}.png")))
    e = html.escape
    c = families.comparison
    names = ", ".join(f"{e(n)} ({fits[n].n_points} runs)" for n in fits)
    body = f"""<!doctype html><html><head><meta charset="utf-8"><title>Scaling-law report: model families</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}img{{max-width:49%;vertical-align:top}}
.warn{{color:#a40}}</style></head><body>
<h1>Scaling-law report: {len(fits)} model families</h1>
<p>Source: {e(c['source'])}. Families: {names}. Form: <b>{e(c['form'])}</b>, fitted to each family's runs on their
own (never pooled). Intervals: 95% percentile bootstrap over each family's runs.</p>
{_families_html(c)}
<h2>Each family's law</h2>{''.join(_family_section(n, fit) for n, fit in fits.items())}
<h2>Figures</h2>{''.join(f'<img src="{n}" alt="{e(t)}" title="{e(t)}">' for t, n in figs)}
</body></html>
"""
    return write_atomic(out / "report.html", body)

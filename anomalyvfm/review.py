"""report.html: the review page of a prediction run (``render``; ``anomalyvfm.outputs`` writes it), and the OK/NG
labels a person exports from it (``read_labels``).

The page is one self-contained file (inline CSS and script, no network, links relative to its folder): a header
with the run's metadata, then one row per image with its thumbnail, overlay, score, verdict and regions. It sorts
by any column, filters by verdict, and lets a person mark each image OK or NG and download those labels as CSV
(``path,label``; absolute paths, resolved when the page is written), which ``anomalyvfm calibrate PROFILE
--labels labels.csv`` reads back (``read_labels``)."""
from __future__ import annotations

import csv
import hashlib
import html
import os
from pathlib import Path
from urllib.parse import quote

from .score_chart import score_histogram
from .visualize import score_text


LABELS = ("OK", "NG")
HEADER_FIELDS = (("model", "model"), ("weights_sha256", "weights sha256"), ("backbone", "backbone"),
                 ("threshold", "threshold"), ("threshold_origin", "threshold origin"), ("image_score", "image score"),
                 ("resolution", "resolution (px)"), ("mode", "mode"), ("backend", "backend"), ("device", "device"),
                 ("anomalyvfm_version", "anomalyvfm"), ("date", "date (UTC)"), ("hardware", "hardware"),
                 ("images_per_s", "images/s"), ("run_id", "run id"), ("status", "status"),
                 ("resumed", "times resumed"), ("carried_over", "images scored before the last resume"))


def _regions_text(regions: list[dict] | None) -> str:
    if not regions:
        return "–"
    parts = [f"#{i + 1} peak {r['peak']:.2f}, {r['area_pct']:.2f}% in x {r['box'][0]}–{r['box'][2]}, y "
             f"{r['box'][1]}–{r['box'][3]}" for i, r in enumerate(regions[:3])]
    more = f"; +{len(regions) - 3} more" if len(regions) > 3 else ""
    return f"{len(regions)} region{'s' if len(regions) > 1 else ''}: " + "; ".join(parts) + more


def _row_html(i: int, row: dict, bin_: int | None = None) -> str:
    e = html.escape
    image = row.get("image")
    src = e(quote(image)) if image else ""  # a URL: '#', '?' or '%' in a file name must not cut it short
    thumb = f'<img class="thumb" src="thumbnails/{src}" alt="" loading="lazy">' if image else ""
    over = (f'<a href="overlays/{src}" target="_blank"><img class="overlay" src="overlays/{src}" '
            f'alt="overlay" loading="lazy"></a>') if image else ""
    score = "" if row.get("score") is None else score_text(row["score"], 4)
    verdict = row.get("verdict", "error")
    detail = e(row["error"]) if row.get("error") else e(_regions_text(row.get("regions")))
    name = e(row["path"])
    file = e(os.path.abspath(row["path"]))  # what the labels CSV names, so that it works from any folder
    radios = ("not scored" if row.get("error") else  # an image that could not be read cannot calibrate anything
              "".join(f'<label><input type="radio" name="l{i}" value="{v}"> {v}</label> ' for v in LABELS))
    key = "k" + hashlib.sha1(str(row["path"]).encode()).hexdigest()[:8]  # the URL's name for the row: stable when a
    # resumed run re-orders rows (its failed ones scored again at the end), where an index would point elsewhere
    return (f'<tr data-path="{name}" data-file="{file}" data-key="{key}" '
            f'data-score="{"" if row.get("score") is None else row["score"]}" data-verdict="{verdict}" '
            f'data-index="{i}" data-bin="{"" if bin_ is None else bin_}">'
            f'<td class="idx">{i + 1}</td><td>{thumb}</td><td>{over}</td>'
            f'<td class="path">{name}</td><td class="score">{score}</td><td class="verdict {verdict}">{verdict}</td>'
            f'<td class="regions">{detail}</td><td class="label">{radios}</td></tr>')


STYLE = """
body{font:14px system-ui,sans-serif;margin:16px;color:#222}
h1{font-size:20px;margin:0 0 8px}
dl.meta{display:grid;grid-template-columns:repeat(auto-fill,minmax(330px,1fr));gap:2px 18px;margin:0 0 10px}
dl.meta div{display:flex;gap:8px;min-width:0} dl.meta dt{color:#666;white-space:nowrap}
dl.meta dd{margin:0;overflow-wrap:anywhere}
.controls{margin:10px 0;display:flex;gap:14px;align-items:center;flex-wrap:wrap}
table.results{border-collapse:collapse;width:100%}
table.results th{position:sticky;top:0;background:#f3f3f3;text-align:left;padding:6px;cursor:pointer;
  user-select:none;border-bottom:2px solid #ccc}
table.results td{padding:6px;border-bottom:1px solid #e4e4e4;vertical-align:middle}
img.thumb{max-width:120px;max-height:120px}
img.overlay{max-width:280px;max-height:260px}
td.path{word-break:break-all;max-width:260px}
td.score{font-variant-numeric:tabular-nums}
td.verdict.anomalous{color:#b3261e;font-weight:600}
td.verdict.normal{color:#1e7b3c;font-weight:600}
td.verdict.error{color:#666}
td.regions{max-width:300px;font-size:12px}
td.label{white-space:nowrap} tr.labelled-OK td.label{background:#e6f4ea} tr.labelled-NG td.label{background:#fce8e6}
.count{color:#666}
svg.histogram{display:block;max-width:100%;height:auto;margin:4px 0}
svg.histogram g.bin{cursor:pointer} svg.histogram g.bin:hover{opacity:.75}
svg.histogram g.bin.chosen rect{stroke:#222;stroke-width:1.5}
"""

SCRIPT = """
(function(){
const body=document.querySelector('#results tbody');
const rows=()=>Array.from(body.rows);
const runId=document.body.dataset.runId;
const store='anomalyvfm-labels-'+runId;
let labels={};
try{labels=JSON.parse(localStorage.getItem(store)||'{}');}catch(e){labels={};}
// the URL keeps the labels too (#labels=k1a2b3c4dN,...: the row's key and OK/NG; a bare row index in older links),
// so a reload never loses them even where the browser keeps no storage for file:// pages reliably (headless
// Chromium binds some loads to an empty one)
const byRef={}; rows().forEach(tr=>{byRef[tr.dataset.index]=tr; byRef[tr.dataset.key]=tr;});
const inUrl=/(?:^#|&)labels=([^&]*)/.exec(location.hash);
if(inUrl) decodeURIComponent(inUrl[1]).split(',').forEach(t=>{const tr=byRef[t.slice(0,-1)], l=t.slice(-1);
  if(tr&&(l==='O'||l==='N')) labels[tr.dataset.path]=l==='O'?'OK':'NG';});
function save(){try{if(Object.keys(labels).length) localStorage.setItem(store,JSON.stringify(labels));
  else localStorage.removeItem(store);}catch(e){}
  const kept=rows().filter(tr=>labels[tr.dataset.path]).map(tr=>tr.dataset.key+labels[tr.dataset.path][0]);
  try{history.replaceState(null,'',kept.length?'#labels='+kept.join(','):location.pathname+location.search);}
  catch(e){}}
function paint(tr){tr.classList.remove('labelled-OK','labelled-NG');
  const l=labels[tr.dataset.path]; if(l){tr.classList.add('labelled-'+l);
  const r=tr.querySelector('input[value="'+l+'"]'); if(r) r.checked=true;}}
rows().forEach(paint);
function counted(){const n=Object.keys(labels).length;
  document.getElementById('labelled').textContent=n+' labelled';}
counted();
body.addEventListener('change',ev=>{const t=ev.target; if(t.type!=='radio')return;
  const tr=t.closest('tr'); labels[tr.dataset.path]=t.value; paint(tr); counted();
  save();});
let sortKey='index',asc=true;
function sortBy(key){ if(sortKey===key){asc=!asc;}else{sortKey=key;asc=key!=='score';}
  const val=tr=>{const v=tr.dataset[key]; if(key==='score'||key==='index'){return v===''?-Infinity:parseFloat(v);}
    return v;};
  const sorted=rows().sort((a,b)=>{const x=val(a),y=val(b); const c=x<y?-1:x>y?1:0; return asc?c:-c;});
  sorted.forEach(tr=>body.appendChild(tr));
  document.querySelectorAll('th[data-key]').forEach(th=>{th.dataset.dir=th.dataset.key===sortKey?(asc?'asc':'desc'):'';
    th.querySelector('.arrow').textContent=th.dataset.key===sortKey?(asc?' ▲':' ▼'):'';});}
document.querySelectorAll('th[data-key]').forEach(th=>th.addEventListener('click',()=>sortBy(th.dataset.key)));
const filter=document.getElementById('filter');
let chosen=null;  // the histogram bar whose images are listed, or null for all
function applyFilter(){const f=filter.value; let n=0;
  rows().forEach(tr=>{const show=(f==='all'||tr.dataset.verdict===f||(f==='unlabelled'&&!labels[tr.dataset.path]))
    &&(chosen===null||tr.dataset.bin===chosen.dataset.bin);
    tr.style.display=show?'':'none'; n+=show;});
  document.getElementById('shown').textContent=n+' shown'+(chosen?' (scores '+chosen.dataset.range+
    '; click the bar again for all)':'');}
document.querySelectorAll('svg.histogram g.bin').forEach(g=>g.addEventListener('click',()=>{
  if(chosen) chosen.classList.remove('chosen'); chosen=chosen===g?null:g; if(chosen) chosen.classList.add('chosen');
  applyFilter();}));
filter.addEventListener('change',applyFilter); applyFilter();
function csvCell(s){return /[",\\n]/.test(s)?'"'+s.replace(/"/g,'""')+'"':s;}
window.labelsCsv=function(){let text='path,label\\n';
  rows().slice().sort((a,b)=>a.dataset.index-b.dataset.index).forEach(tr=>{const l=labels[tr.dataset.path];
    if(l) text+=csvCell(tr.dataset.file)+','+l+'\\n';}); return text;};
document.getElementById('download').addEventListener('click',()=>{
  const blob=new Blob([labelsCsv()],{type:'text/csv'}); const a=document.createElement('a');
  a.href=URL.createObjectURL(blob); a.download='labels.csv'; document.body.appendChild(a); a.click(); a.remove();});
document.getElementById('clear').addEventListener('click',()=>{labels={}; save();
  rows().forEach(tr=>{tr.querySelectorAll('input').forEach(i=>i.checked=false); paint(tr);}); counted();});
})();
"""


def render(rows: list[dict], metadata: dict) -> str:
    """The page's HTML for result rows and run metadata."""
    e = html.escape
    counts = {v: sum(r.get("verdict") == v for r in rows) for v in ("anomalous", "normal", "error")}
    meta = "".join(f"<div><dt>{label}</dt><dd>{e(str(metadata[key]))}</dd></div>" for key, label in HEADER_FIELDS
                   if metadata.get(key) is not None)
    head = "".join(f'<th data-key="{k}">{t}<span class="arrow"></span></th>' if k else f"<th>{t}</th>" for k, t in
                   (("index", "#"), (None, "image"), (None, "overlay"), ("path", "path"), ("score", "score"),
                    ("verdict", "verdict"), (None, "regions"), (None, "your label")))
    chart, bins = score_histogram(rows)
    body = "\n".join(_row_html(i, r, b) for i, (r, b) in enumerate(zip(rows, bins)))
    images = f"{len(rows)} image{'s' * (len(rows) != 1)}"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>anomalyvfm review: {images}</title><style>{STYLE}</style></head>
<body data-run-id="{e(str(metadata.get('run_id', '')))}">
<h1>anomalyvfm review</h1>
<dl class="meta">{meta}</dl>
<p class="count">{images}: {counts['anomalous']} anomalous, {counts['normal']} normal,
{counts['error']} failed. Overlays: colour where the map is high (the pixel threshold is the middle of the scale),
predicted regions outlined in red, numbered as listed (strongest first).</p>
{chart}
<div class="controls">
<label>show <select id="filter"><option value="all">all</option><option value="anomalous">anomalous</option>
<option value="normal">normal</option><option value="error">failed</option>
<option value="unlabelled">not labelled yet</option></select></label>
<span id="shown" class="count"></span>
<span id="labelled" class="count"></span>
<button id="download" type="button">download labels (CSV)</button>
<button id="clear" type="button">clear labels</button>
<span class="count">then: anomalyvfm calibrate PROFILE --labels labels.csv</span>
</div>
<table id="results" class="results"><thead><tr>{head}</tr></thead>
<tbody>
{body}
</tbody></table>
<script>{SCRIPT}</script>
</body></html>
"""


def read_labels(path: str | os.PathLike) -> tuple[list[str], list[str]]:
    """The OK and NG image paths of a labels CSV (``path,label``) exported from report.html, also after a spreadsheet
    saved it again (a byte-order mark, ``;`` or tab between the columns). A path that does not exist as given is
    looked up beside the CSV; an unknown label is an error naming its line."""
    path = Path(path)
    ok, ng = [], []
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text (byte {e.start}); save it as CSV UTF-8") from None
    header = text.split("\n", 1)[0]
    delimiter = max(",;\t", key=header.count)
    reader = csv.DictReader(text.splitlines(), delimiter=delimiter)
    columns = [c.strip().lower() for c in reader.fieldnames or []]
    if not {"path", "label"} <= set(columns):
        raise ValueError(f"{path}: expected a CSV with the columns path,label (exported from report.html), found "
                         f"{header.strip()[:80]!r}")
    reader.fieldnames = columns
    for line, row in enumerate(reader, start=2):
        label = (row["label"] or "").strip().upper()
        if label not in LABELS:
            raise ValueError(f"{path}:{line}: label {row['label']!r} is not OK or NG")
        if not (row["path"] or "").strip():
            raise ValueError(f"{path}:{line}: no image path")
        image = Path(row["path"])
        if not image.exists() and (path.parent / image).exists():
            image = path.parent / image
        (ok if label == "OK" else ng).append(str(image))
    return ok, ng


"""A browsable HTML gallery of pair candidates, with filters, and reviews recorded back into the store.

`write_gallery` makes one self-contained page (thumbnails inline). Served by `review_app`, its
accept/reject buttons POST to /review: the decision is appended to reviews.jsonl and the pair table
gains a `review` column. Opened as a plain file, the buttons collect decisions for an export.
"""

from __future__ import annotations

import base64
import io
from html import escape
from pathlib import Path

from PIL import Image

from imagesafety.files import write_atomic
from imagesafety.pairs.store import PairStore
from imagesafety.records.pairs import PairCandidate

SCRIPT = """
function applyFilters() {
  const cat = document.getElementById('f-category').value, verdict = document.getElementById('f-verdict').value;
  const minSsim = parseFloat(document.getElementById('f-ssim').value || '0');
  let shown = 0;
  document.querySelectorAll('.card').forEach(c => {
    const ok = (!cat || c.dataset.category === cat) && (!verdict || c.dataset.verdict === verdict)
      && parseFloat(c.dataset.ssim) >= minSsim;
    c.style.display = ok ? '' : 'none'; if (ok) shown++;
  });
  document.getElementById('shown').textContent = shown;
}
const decisions = {};
async function review(pairId, decision, button) {
  decisions[pairId] = decision;
  const card = button.closest('.card');
  card.dataset.review = decision; card.querySelector('.review').textContent = decision;
  if (location.protocol.startsWith('http')) {
    await fetch('review', {method: 'POST', headers: {'Content-Type': 'application/json'},
                           body: JSON.stringify({pair_id: pairId, decision})});
  }
}
function exportReviews() {
  const blob = new Blob([JSON.stringify(decisions)], {type: 'application/json'});
  const a = document.createElement('a'); a.href = URL.createObjectURL(blob); a.download = 'reviews.json'; a.click();
}
"""

CSS = """body{font-family:system-ui,sans-serif;margin:1.5rem auto;max-width:1600px;padding:0 1rem}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(380px,1fr));gap:1rem}
.card{border:1px solid #ddd;border-radius:6px;padding:.6rem;font-size:.8rem;background:#fff}
.pair{display:grid;grid-template-columns:1fr 1fr;gap:.5rem} figure{margin:0}
figcaption{font-weight:600;margin-bottom:.2rem}
figure img{width:100%;aspect-ratio:1;object-fit:contain;background:#f4f4f4;border:1px solid #e5e5e5}
.missing{width:100%;aspect-ratio:1;display:flex;align-items:center;justify-content:center;background:#f8f8f8;
color:#888;border:1px dashed #ccc}
.file{font-weight:600;margin:.4rem 0 .1rem;word-break:break-all} .meta{color:#555}
.rejected{border-color:#e0a3a3;background:#fffafa}
.badge{font-size:.7rem;padding:.05rem .4rem;border-radius:3px;margin-left:.3rem} .badge.kept{background:#dff0d8}
.badge.rejected{background:#f2dede}
.reasons{color:#a33} .review{font-weight:bold} label{margin-right:1rem}"""


def _thumb(path: Path | None, missing: str) -> str:
    if path is None or not path.is_file():
        return f"<div class=missing>{escape(missing)}</div>"
    img = Image.open(path).convert("RGB")
    img.thumbnail((320, 320))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=82)
    return f"<img src='data:image/jpeg;base64,{base64.b64encode(buf.getvalue()).decode()}' alt=''>"


def _image(out: Path, c: PairCandidate, kind: str) -> Path | None:
    """The stored image (kept pairs) or preview (rejected candidates) of the original or the edit."""
    rel = (c.original or c.original_preview) if kind == "original" else (c.edited or c.edited_preview)
    if rel:
        return out / rel
    return out / "images" / f"{c.image_sha256[:16]}.png" if kind == "original" else None


def write_gallery(out: str | Path) -> Path:
    out = Path(out)
    store = PairStore(out)
    candidates = store.candidates()
    reviews = store.reviews()
    cards, categories = [], sorted({c.category for c in candidates})
    for c in candidates:
        verdict = "kept" if c.kept else "rejected"
        original = _thumb(_image(out, c, "original"), "original not stored")
        edited = _thumb(_image(out, c, "edited"), "no edit (the editor failed)" if not c.scores else "edit not stored")
        edited_title = "edited" if c.kept else "edited (rejected)"
        ssim = c.scores.get("ssim", 0.0)
        judge = c.scores.get("judge_edited")
        name = c.source_image or c.sample_id or ""
        buttons = (
            (
                f"<button onclick=\"review('{c.pair_id}','accepted',this)\">accept</button> "
                f"<button onclick=\"review('{c.pair_id}','rejected',this)\">reject</button> "
                f"<span class=review>{escape(reviews.get(str(c.pair_id), ''))}</span>"
            )
            if c.kept
            else ""
        )
        cards.append(
            f"<div class='card {verdict}' data-category='{escape(c.category)}' data-verdict='{verdict}' "
            f"data-ssim='{ssim:.4f}' "
            f"data-pair='{escape(c.pair_id or '')}'>"
            f"<div class=pair><figure><figcaption>original</figcaption>{original}</figure>"
            f"<figure><figcaption>{edited_title}</figcaption>{edited}</figure></div>"
            f"<div class=file title='{escape(c.sample_id or '')}'>{escape(name)}<span class='badge "
            f"{verdict}'>{verdict}</span></div>"
            f"<div class=meta>{escape(c.category)} · seed {c.seed} · SSIM {ssim:.3f}"
            f"{'' if judge is None else f' · judge on the edit {judge:.3f}'}</div>"
            f"<div>{escape(c.instruction)}</div><div "
            f"class=reasons>{escape('; '.join(c.reasons))}</div>{buttons}</div>"
        )
    options = "".join(f"<option value='{escape(k)}'>{escape(k)}</option>" for k in categories)
    html = (
        f"<!doctype html><html><head><meta charset=utf-8><title>imagesafety pairs</title><style>{CSS}</style>"
        f"<script>{SCRIPT}</script></head><body><h1>Pair candidates ({len(candidates)})</h1><p>"
        "<label>category <select id=f-category onchange=applyFilters()><option "
        f"value=''>all</option>{options}</select></label>"
        "<label>verdict <select id=f-verdict onchange=applyFilters()><option value=''>all</option><option>kept</option>"
        "<option>rejected</option></select></label>"
        "<label>min SSIM <input id=f-ssim type=number step=0.05 value=0 onchange=applyFilters()></label>"
        f"shown: <span id=shown>{len(cards)}</span> <button onclick=exportReviews()>export reviews</button></p>"
        f"<div class=grid>{''.join(cards)}</div></body></html>"
    )
    return write_atomic(out / "gallery.html", html)


def review_app(out: str | Path):
    """A small FastAPI app serving the gallery and recording reviews into the store."""
    from fastapi import Body, FastAPI, HTTPException
    from fastapi.responses import HTMLResponse

    out = Path(out)
    app = FastAPI(title="imagesafety pair review")

    @app.get("/", response_class=HTMLResponse)
    def gallery():
        return write_gallery(out).read_text(encoding="utf-8")

    @app.post("/review")
    def review(body: dict = Body(...)):  # {"pair_id", "decision": accepted|rejected, "reviewer"?}
        try:
            PairStore(out).record_review(str(body.get("pair_id")), str(body.get("decision")), body.get("reviewer"))
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
        return {"ok": True}

    return app

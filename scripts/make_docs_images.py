"""Write the README's pictures from the sample export: docs/dvh.png and docs/report.png.

    python scripts/make_docs_images.py

docs/dvh.png is the DVH figure of case 06 (stored curves solid, computed dashed);
docs/report.png is headless Chromium's view of the top of that plan's HTML report,
what a physicist signs: from its heading (code, confidence, reasons, flags,
prescription) through its DVH figure and table to its beam table. Needs Debian's
chromium (apt-get install chromium).
"""

from __future__ import annotations

import html
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

from rtcode.coding.policy import load
from rtcode.engine.scan import scan
from rtcode.report import plots
from rtcode.report.html import report_html
from rtcode.report.patients import build_report

ROOT = Path(__file__).resolve().parent.parent
CASE = "06_four_field_box_3d"
WIDTH = 1400
SCALE = 0.6

# Where the plan's heading starts and its beam table ends, in page pixels.
_PROBE = """<script>
addEventListener('load', () => {
  const plan = document.querySelector('article.plan');
  const top = plan.querySelector('h3').getBoundingClientRect().top + scrollY - 8;
  const bottom = plan.querySelector('table.beams').getBoundingClientRect().bottom + scrollY + 8;
  const pre = document.createElement('pre'); pre.id = 'probe';
  pre.textContent = JSON.stringify({top, bottom}); document.body.appendChild(pre);
});
</script>"""


def chromium(profile: Path, *args: str) -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        sys.exit("needs headless Chromium: apt-get install chromium")
    cmd = [
        exe,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--hide-scrollbars",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=120).stdout


def small_png(image: Image.Image, path: Path) -> None:
    image = image.convert("RGB").quantize(colors=256, method=Image.Quantize.FASTOCTREE)
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    path.write_bytes(buf.getvalue())
    size = len(buf.getvalue())
    print(f"wrote {path.relative_to(ROOT)} ({image.width}x{image.height}, {size} bytes)")


def main() -> None:
    os.chdir(ROOT)  # paths in the picture relative to the project, as a user types them
    docs = ROOT / "docs"
    report = build_report(scan([f"sample_data/{CASE}"], load("default")), "always")
    (plan,) = report.plans
    dvh = plots.dvh_png(plan.dvh)
    assert dvh is not None
    small_png(Image.open(io.BytesIO(dvh)), docs / "dvh.png")

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        page = work / "report.html"
        text = report_html(report)
        page.write_text(text, encoding="utf-8")
        probe = work / "probe.html"
        no_csp = text.replace("<meta http-equiv", "<meta data-off", 1)
        probe.write_text(no_csp.replace("</body>", _PROBE + "</body>"), encoding="utf-8")
        size = f"--window-size={WIDTH},3000"  # the same width as the screenshot: same layout
        dom = chromium(
            work / "p1", "--virtual-time-budget=10000", size, "--dump-dom", probe.as_uri()
        )
        start = dom.index('<pre id="probe">') + len('<pre id="probe">')
        box = json.loads(html.unescape(dom[start : dom.index("</pre>", start)]))
        height = int(box["bottom"]) + 10
        shot = work / "shot.png"
        size = f"--window-size={WIDTH},{height}"
        chromium(
            work / "p2", "--virtual-time-budget=10000", f"--screenshot={shot}", size, page.as_uri()
        )
        image = Image.open(shot).crop((0, int(box["top"]), WIDTH, int(box["bottom"])))
        image = image.resize(
            (int(image.width * SCALE), int(image.height * SCALE)), Image.Resampling.LANCZOS
        )
        small_png(image, docs / "report.png")


if __name__ == "__main__":
    main()

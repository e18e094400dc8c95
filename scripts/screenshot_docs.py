"""Open the built documentation site in headless Chromium: screenshots and a DOM check.

    nox -s screenshots            # builds the site first
    python scripts/screenshot_docs.py site docs/screenshots

Serves the built site on a free loopback port, then, for the overview and the fan-out page,
asks Chromium for the rendered DOM (checking that the page's own headings, the navigation and
the search box are there, and that the theme's stylesheet was applied) and for a PNG screenshot.
Exits non-zero on any mismatch. Needs Debian's ``chromium`` (``apt-get install chromium``).
"""

from __future__ import annotations

import functools
import http.server
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import zlib
from pathlib import Path

PAGES = {
    "index": ("", ["Why this SDK", "Where to go next", "Fan-out and the watcher"]),
    "fan-out": ("fan-out/", ["A batch of tasks", "One scheduler", "The shared polling budget"]),
}
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--window-size=1280,1600",
    "--virtual-time-budget=5000",
]


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    raise SystemExit("Chromium not found: apt-get install chromium")


def run_chromium(args: list[str], profile: str) -> str:
    command = [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)  # noqa: S603
    if done.returncode != 0:
        raise SystemExit(f"chromium failed ({done.returncode}): {done.stderr[-2000:]}")
    return done.stdout


def distinct_rows(path: Path) -> int:
    """How many distinct (filtered) pixel rows the PNG has: a blank render has one or two."""
    data = path.read_bytes()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise SystemExit(f"{path} is not a PNG")
    pos, idat, height = 8, b"", 1
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        if kind == b"IHDR":
            (height,) = struct.unpack(">I", data[pos + 12 : pos + 16])
        elif kind == b"IDAT":
            idat += data[pos + 8 : pos + 8 + length]
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = len(raw) // height  # each row: a filter byte, then the row's pixels
    return len({raw[i + 1 : i + stride] for i in range(0, len(raw), stride)})


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> None:
    site, out = Path(sys.argv[1]), Path(sys.argv[2])
    if not (site / "index.html").is_file():
        raise SystemExit(f"no built site in {site}: run mkdocs build first")
    out.mkdir(parents=True, exist_ok=True)
    handler = functools.partial(QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    problems: list[str] = []
    try:
        for name, (path, headings) in PAGES.items():
            with tempfile.TemporaryDirectory() as profile:
                dom = run_chromium(["--dump-dom", base + path], profile)
            for text in [*headings, 'class="md-search__input"', "assets/stylesheets/main."]:
                if text not in dom:
                    problems.append(f"{name}: {text!r} is not in the rendered page")
            shot = out / f"{name}.png"
            with tempfile.TemporaryDirectory() as profile:
                run_chromium([f"--screenshot={shot}", base + path], profile)
            rows = distinct_rows(shot)
            print(f"{shot}: {shot.stat().st_size} bytes, {rows} distinct pixel rows")
            if rows < 50:
                problems.append(f"{name}: the screenshot looks blank ({rows} distinct rows)")
    finally:
        server.shutdown()
    if problems:
        raise SystemExit("\n".join(problems))
    print("the site renders in Chromium: " + ", ".join(PAGES))


if __name__ == "__main__":
    main()

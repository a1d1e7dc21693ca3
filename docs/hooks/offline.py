"""A mkdocs hook: the built site must work offline, so no page may fetch a script, a style sheet or a font
from the web. Each such reference in the built HTML or CSS is a warning, which `mkdocs build --strict` turns
into a failed build. Links that a reader clicks (`<a href="https://...">`) are fine.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

log = logging.getLogger("mkdocs.hooks.offline")

FETCHED = [
    re.compile(r"<script[^>]*\ssrc=[\"']?(?:https?:)?//[^\"'\s>]+", re.I),
    re.compile(r"<link[^>]*\shref=[\"']?(?:https?:)?//[^\"'\s>]+", re.I),
    re.compile(r"<(?:img|iframe|source|video|audio)[^>]*\ssrc=[\"']?(?:https?:)?//[^\"'\s>]+", re.I),
    re.compile(r"@import\s+(?:url\()?[\"']?(?:https?:)?//[^\"'\s)]+", re.I),
    re.compile(r"url\([\"']?(?:https?:)?//[^\"')\s]+", re.I),
    re.compile(r"fonts\.(?:googleapis|gstatic)\.com", re.I),
]


def remote_fetches(site: Path) -> list[str]:
    """`file: what it fetches` for every web fetch in the built site's HTML and CSS."""
    found = []
    for path in sorted(site.rglob("*")):
        if path.suffix not in (".html", ".css") or not path.is_file():
            continue
        text = path.read_text(errors="replace")
        for pattern in FETCHED:
            found += [f"{path.relative_to(site)}: {m.group(0)[:120]}" for m in pattern.finditer(text)]
    return found


def on_post_build(config):  # mkdocs hook
    for hit in remote_fetches(Path(config["site_dir"])):
        log.warning("the site fetches from the web (it must work offline): %s", hit)

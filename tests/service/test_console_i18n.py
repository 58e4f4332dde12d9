"""The console's texts: every key the page asks for exists in English and in French."""

from __future__ import annotations

import re

from lastwatt.api import DASHBOARD_DIR

_KEY = re.compile(r"\b([a-z][a-z0-9_]*)\s*:\s*\"")


def _block(source: str, start: str, end: str) -> set[str]:
    body = source[source.index(start) : source.index(end, source.index(start))]
    return set(_KEY.findall(body))


def test_every_text_the_console_uses_exists_in_both_languages():
    texts = (DASHBOARD_DIR / "i18n.js").read_text(encoding="utf-8")
    english = _block(texts, "  en: {", "\n  },")
    french = _block(texts, "  fr: {", "\n  },")
    assert english == french, f"only en: {english - french}; only fr: {french - english}"
    app = (DASHBOARD_DIR / "app.js").read_text(encoding="utf-8")
    used = set(re.findall(r"\bt\(\"([a-z0-9_]+)\"", app))
    used |= set(re.findall(r"data-i18n=\"([a-z0-9_]+)\"", app))
    html = (DASHBOARD_DIR / "index.html").read_text(encoding="utf-8")
    used |= set(re.findall(r"data-i18n=\"([a-z0-9_]+)\"", html))
    # t("mode_" + mode): a prefix, completed at run time; some key must start with it.
    prefixes = {k for k in used if k.endswith("_")}
    assert {p for p in prefixes if not any(k.startswith(p) for k in english)} == set()
    assert used - prefixes - english == set(), "texts the console asks for but i18n.js lacks"


def test_every_reason_a_plan_or_a_meter_gives_has_a_text_in_both_languages():
    from dispatch.schedule import Reason

    texts = (DASHBOARD_DIR / "i18n.js").read_text(encoding="utf-8")
    reasons = texts[texts.index("const REASONS") :]
    english = _block(reasons, "  en: {", "\n  },")
    french = _block(reasons, "  fr: {", "\n  },")
    # The plan's reason codes, the meters' own (controllers' MeasuredState.meters_open)
    # and the console's own (operator_hold, unknown).
    wanted = {r.value for r in Reason} | {"tripped", "budget_exhausted", "operator_hold"}
    assert wanted - english == set()
    assert english == french, f"only en: {english - french}; only fr: {french - english}"

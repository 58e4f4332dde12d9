"""Copy the dashboard's front-end libraries from frontend/node_modules into the package.

Run by ``make`` after ``npm ci`` in ``frontend/`` (versions pinned in
``frontend/package-lock.json``): the dashboard and the offline API docs serve these files
from ``lastwatt/dashboard/vendor/``; nothing is ever loaded from a CDN.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODULES = ROOT / "frontend" / "node_modules"
VENDOR = ROOT / "lastwatt" / "dashboard" / "vendor"

# package → (files to copy, relative to the package, into vendor/<package>/)
FILES = {
    "uplot": ["dist/uPlot.iife.min.js", "dist/uPlot.min.css", "LICENSE"],
    "leaflet": ["dist/leaflet.js", "dist/leaflet.css", "LICENSE"],
    "swagger-ui-dist": ["swagger-ui-bundle.js", "swagger-ui.css", "LICENSE"],
}


def main() -> int:
    missing = [
        f"{package}/{name}"
        for package, names in FILES.items()
        for name in names
        if not (MODULES / package / name).exists()
    ]
    if missing:
        print(
            f"vendor_frontend: missing {', '.join(missing)}; run `npm ci` in frontend/ first",
            file=sys.stderr,
        )
        return 2
    shutil.rmtree(VENDOR, ignore_errors=True)
    for package, names in FILES.items():
        target = VENDOR / package
        target.mkdir(parents=True)
        for name in names:
            shutil.copy2(MODULES / package / name, target / Path(name).name)
    print(f"vendor_frontend: {sum(map(len, FILES.values()))} files in {VENDOR.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

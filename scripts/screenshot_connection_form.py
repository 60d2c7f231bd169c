"""Screenshot Airflow's "Add Connection" form with the METI connection type chosen.

Starts a throwaway Airflow API server (home ``.airflow/screenshot``, 127.0.0.1, a free port),
opens the form in headless Chromium and writes ``docs/connection-form.png`` (the relabelled
standard fields) and ``docs/connection-form-extras.png`` (the METI extras).

Needs Debian's Chromium and Playwright's Python package (no downloaded browsers)::

    apt-get install chromium
    .venv/bin/pip install playwright
    .venv/bin/python scripts/screenshot_connection_form.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from airflow_ui import (
    API_SERVER,
    ROOT,
    airflow_env,
    chromium_page,
    components,
    free_port,
    fresh_home,
    healthy,
    migrate,
    wait_for,
)

HOME = ROOT / ".airflow" / "screenshot"
OUTPUT = ROOT / "docs" / "connection-form.png"
EXTRAS_OUTPUT = ROOT / "docs" / "connection-form-extras.png"


def main() -> int:
    fresh_home(HOME)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = airflow_env(HOME, port)
    migrate(env)
    with components(HOME, env, {"api-server": API_SERVER}, port) as groups:
        wait_for(lambda: healthy(url), "the API server", groups, HOME, limit=120)
        take_screenshot(url)
    print(f"Wrote {OUTPUT.relative_to(ROOT)} and {EXTRAS_OUTPUT.relative_to(ROOT)}")
    return 0


def take_screenshot(url: str) -> None:
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    with chromium_page(1280, 1600) as page:
        page.goto(f"{url}/connections", wait_until="networkidle")
        page.get_by_role("button", name="Add Connection").click()
        form = page.get_by_role("dialog")
        form.get_by_label("Connection ID").fill("meti_default")
        connection_type = form.get_by_role("combobox")
        connection_type.click()
        connection_type.fill("METI")
        page.keyboard.press("Enter")
        form.get_by_text("Base URL").wait_for()
        page.wait_for_timeout(500)  # let the accordion finish opening
        form.screenshot(path=str(OUTPUT))
        form.get_by_role("button", name="Extra Fields", exact=True).click()
        form.get_by_text("API version").wait_for()
        page.wait_for_timeout(500)
        form.screenshot(path=str(EXTRAS_OUTPUT))


if __name__ == "__main__":
    sys.exit(main())

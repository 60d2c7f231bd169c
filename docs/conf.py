"""Sphinx configuration of the airflow-provider-meti documentation.

Build it with ``scripts/docs.sh`` (warnings are errors); the HTML lands in
``.airflow/docs-html``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# autodoc imports the provider, and so Airflow: keep Airflow's files out of ~/airflow.
os.environ.setdefault("AIRFLOW_HOME", str(ROOT / ".airflow" / "docs-home"))

from airflow_provider_meti import __version__  # noqa: E402

project = "airflow-provider-meti"
author = "airflow-provider-meti contributors"
copyright = "airflow-provider-meti contributors, Apache-2.0"
version = release = __version__

extensions = ["sphinx.ext.autodoc"]
exclude_patterns = ["_build"]
root_doc = "index"
html_theme = "alabaster"
html_title = f"airflow-provider-meti {release}"

# The public classes only, in the order of their source; never the private modules.
autodoc_default_options = {"member-order": "bysource", "show-inheritance": True}
autodoc_typehints = "signature"

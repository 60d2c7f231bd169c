"""Apache Airflow provider for Millpont's METI API."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_CONN_FIELDS: dict[str, dict[str, Any]] = {
    "api_version": {
        "label": "API version",
        "description": "1 (email/password at {host}/token) or 2 (OAuth2 client credentials).",
        "schema": {"type": ["integer", "null"]},
    },
    "token_url": {
        "label": "Token URL (v2)",
        "description": (
            "Required for v2: the OAuth2 tenant's token endpoint, e.g. "
            "https://<tenant>/oauth/token."
        ),
        "schema": {"type": ["string", "null"]},
    },
    "audience": {
        "label": "Audience (v2)",
        "description": "OAuth2 audience; defaults to https://api.meti.millpont.com.",
        "schema": {"type": ["string", "null"]},
    },
    "scope": {
        "label": "Scopes (v2)",
        "description": (
            "Space-separated OAuth2 scopes asked for with each token, e.g. "
            "read:sources write:sources delete:sources. Empty: the client's defaults."
        ),
        "schema": {"type": ["string", "null"]},
    },
    "sandbox": {
        "label": "Use METI's sandbox",
        "description": (
            "Send every source request to {host}/sandbox/...: METI's sandbox, which keeps "
            "nothing for good. Try a DAG there before it writes to production."
        ),
        "schema": {"type": ["boolean", "null"]},
    },
    "token_cache": {
        "label": "Share tokens on this host",
        "description": (
            "Keep the token in an encrypted file that every task process of this host and "
            "OS user reuses, instead of asking for one per task. Default true."
        ),
        "schema": {"type": ["boolean", "null"]},
    },
    "token_cache_dir": {
        "label": "Token cache folder",
        "description": (
            "Absolute path of the host's token cache (created 0700). Empty: "
            "$XDG_CACHE_HOME/airflow-provider-meti or ~/.cache/airflow-provider-meti."
        ),
        "schema": {"type": ["string", "null"]},
    },
    "timeout": {
        "label": "Timeout (seconds)",
        "description": "Per-request timeout. Default 30.",
        "schema": {"type": ["number", "null"]},
    },
    "max_retries": {
        "label": "Max retries",
        "description": "Retries for connection errors, timeouts, 429 and 5xx. Default 5.",
        "schema": {"type": ["integer", "null"]},
    },
    "max_retry_time": {
        "label": "Max retry time (seconds)",
        "description": (
            "No retry starts this long after a call (a page, a create batch) began. Default 120."
        ),
        "schema": {"type": ["number", "null"]},
    },
    "token_refresh_margin": {
        "label": "Token refresh margin (seconds)",
        "description": (
            "Renew a token this long before it expires (at most a fifth of its lifetime). "
            "Default 60."
        ),
        "schema": {"type": ["number", "null"]},
    },
    "verify": {
        "label": "Verify TLS",
        "description": "true (default), false, or the path of a CA bundle.",
        "schema": {"type": ["string", "null"]},
    },
    "allow_insecure_http": {
        "label": "Allow plain http:// to a non-loopback host",
        "description": "Off by default: credentials would travel unencrypted.",
        "schema": {"type": ["boolean", "null"]},
    },
}


# The ``meti://`` asset scheme (see ``assets``). Airflow 3 reads "asset-uris" and skips an
# entry without "handler"; Airflow 2.11 reads the same entry as "dataset-uris".
_ASSET_URIS: list[dict[str, Any]] = [
    {
        "schemes": ["meti"],
        "handler": "airflow_provider_meti.assets.sanitize_uri",
        "factory": "airflow_provider_meti.assets.create_asset",
        "to_openlineage_converter": "airflow_provider_meti.assets.convert_asset_to_openlineage",
    }
]


def get_provider_info() -> dict[str, Any]:
    """Describe the provider to Airflow (entry point ``apache_airflow_provider``)."""
    return {
        "package-name": "airflow-provider-meti",
        "name": "METI",
        "description": "Register and extract environmental sources with Millpont's METI API.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "METI",
                "external-doc-url": "https://docs.meti.millpont.com/",
                "tags": ["service"],
            }
        ],
        "hooks": [
            {"integration-name": "METI", "python-modules": ["airflow_provider_meti.hooks.meti"]}
        ],
        "operators": [
            {
                "integration-name": "METI",
                "python-modules": [
                    "airflow_provider_meti.operators.meti",
                    "airflow_provider_meti.operators.conflict_review",
                ],
            }
        ],
        "sensors": [
            {"integration-name": "METI", "python-modules": ["airflow_provider_meti.sensors.meti"]}
        ],
        "triggers": [
            {
                "integration-name": "METI",
                "python-modules": [
                    "airflow_provider_meti.triggers.meti",
                    "airflow_provider_meti.triggers.sources_changed",
                ],
            }
        ],
        "connection-types": [
            {
                "connection-type": "meti",
                "hook-class-name": "airflow_provider_meti.hooks.meti.MetiHook",
                "hook-name": "METI",
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port"],
                    "relabeling": {
                        "host": "Base URL",
                        "login": "Email (v2: client ID)",
                        "password": "Password (v2: client secret)",
                    },
                    "placeholders": {
                        "host": "https://api.meti.millpont.com",
                        "login": "you@example.com",
                        "extra": '{"api_version": 1, "timeout": 30, "max_retries": 5}',
                    },
                },
                "conn-fields": _CONN_FIELDS,
            }
        ],
        "asset-uris": _ASSET_URIS,
        "dataset-uris": _ASSET_URIS,
    }

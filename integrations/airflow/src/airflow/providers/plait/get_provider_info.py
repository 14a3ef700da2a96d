"""Provider metadata, read by Airflow through the ``apache_airflow_provider`` entry point."""

from __future__ import annotations

from typing import Any


def get_provider_info() -> dict[str, Any]:
    """What this provider adds to Airflow: the ``plait`` connection type, operator, sensor,
    trigger, hook and extra link."""
    return {
        "package-name": "apache-airflow-providers-plait",
        "name": "plait",
        "description": "Run plait workflows (typed, dynamic, over gRPC) from Airflow DAGs.",
        "versions": ["0.1.0"],
        "integrations": [
            {
                "integration-name": "plait",
                "external-doc-url": "https://github.com/plait/plait",
                "tags": ["software"],
            }
        ],
        "operators": [
            {
                "integration-name": "plait",
                "python-modules": ["airflow.providers.plait.operators.plait"],
            }
        ],
        "sensors": [
            {
                "integration-name": "plait",
                "python-modules": ["airflow.providers.plait.sensors.plait"],
            }
        ],
        "hooks": [
            {"integration-name": "plait", "python-modules": ["airflow.providers.plait.hooks.plait"]}
        ],
        "triggers": [
            {
                "integration-name": "plait",
                "python-modules": ["airflow.providers.plait.triggers.plait"],
            }
        ],
        "extra-links": ["airflow.providers.plait.operators.plait.PlaitExecutionLink"],
        "connection-types": [
            {
                "connection-type": "plait",
                "hook-class-name": "airflow.providers.plait.hooks.plait.PlaitHook",
                "hook-name": "plait",
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "login", "extra"],
                    "relabeling": {"host": "Engine host", "password": "Token"},
                    "placeholders": {"host": "127.0.0.1", "port": "8089"},
                },
                "conn-fields": {
                    "tls": {
                        "label": "TLS",
                        "description": "Connect with TLS, trusting the system's root certificates.",
                        "schema": {"type": ["boolean", "null"], "default": False},
                    },
                    "ca_cert": {
                        "label": "CA certificate",
                        "description": "PEM text or file of a private CA to trust (implies TLS).",
                        "schema": {"type": ["string", "null"]},
                    },
                    "console_url": {
                        "label": "Console URL",
                        "description": "Base URL of the plait console, for links to executions.",
                        "schema": {"type": ["string", "null"]},
                    },
                    "namespace": {
                        "label": "Namespace",
                        "description": "Request id prefix, when several Airflows share one engine.",
                        "schema": {"type": ["string", "null"]},
                    },
                },
            }
        ],
    }

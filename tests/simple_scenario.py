"""A small inline scenario builder for engine tests: one service, everything in one file."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

QUERY = 'sum(rate(http_requests_total{service="api"}[1m]))'


def scenario(
    *,
    traffic: dict[str, Any] | None = None,
    min_replicas: int = 1,
    max_replicas: int = 10,
    threshold: float = 20.0,
    activation: float = 0.0,
    polling_interval: int = 30,
    cooldown: int = 300,
    behavior: dict[str, Any] | None = None,
    horizon: str = "30m",
    seed: int = 1,
    scrape_interval: str = "15s",
    initial_replicas: int | None = 2,
    model: dict[str, Any] | None = None,
    fidelity: str = "fluid",
    query: str = QUERY,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "scaleTargetRef": {"name": "api"},
        "pollingInterval": polling_interval,
        "cooldownPeriod": cooldown,
        "minReplicaCount": min_replicas,
        "maxReplicaCount": max_replicas,
        "triggers": [
            {
                "type": "prometheus",
                "metadata": {
                    "serverAddress": "http://prometheus:9090",
                    "query": query,
                    "threshold": str(threshold),
                    "activationThreshold": str(activation),
                },
            }
        ],
    }
    if behavior is not None:
        spec["advanced"] = {"horizontalPodAutoscalerConfig": {"behavior": behavior}}
    service: dict[str, Any] = {
        "name": "api",
        "inline": {
            "scaled_object": {
                "apiVersion": "keda.sh/v1alpha1",
                "kind": "ScaledObject",
                "metadata": {"name": "api", "namespace": "dev"},
                "spec": spec,
            },
            "deployment": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "api", "namespace": "dev"},
                "spec": {
                    "replicas": 2,
                    "selector": {"matchLabels": {"app": "api"}},
                    "template": {
                        "metadata": {"labels": {"app": "api"}},
                        "spec": {
                            "containers": [
                                {
                                    "name": "api",
                                    "image": "api:1",
                                    "resources": {"requests": {"cpu": "500m", "memory": "256Mi"}},
                                }
                            ]
                        },
                    },
                },
            },
        },
        "traffic": traffic or {"kind": "constant", "rps": 50},
        "model": model
        or {
            "workers": 4,
            "service_time": {"distribution": "exponential", "mean": "50ms"},
            "cpu_per_request": "5ms",
            "startup": {"distribution": "lognormal", "mean": "20s", "cv": 0.3},
        },
        "metrics": {"labels": {"service": "api", "namespace": "dev"}},
    }
    if initial_replicas is not None:
        service["initial_replicas"] = initial_replicas
    return {
        "name": "engine-test",
        "horizon": horizon,
        "step": "5s",
        "seed": seed,
        "fidelity": fidelity,
        "controllers": {"prometheus": {"scrape_interval": scrape_interval}},
        "services": [service],
        "slos": [
            {
                "name": "api-latency",
                "service": "api",
                "kind": "latency",
                "threshold": "300ms",
                "objective": 0.99,
            }
        ],
    }


def write(tmp: Path, data: dict[str, Any], name: str = "scenario.yaml") -> Path:
    path = tmp / name
    yaml = YAML()
    with path.open("w") as f:
        yaml.dump(copy.deepcopy(data), f)
    return path

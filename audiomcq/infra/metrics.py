"""Progress of batch stages (training, filtering, generation) pushed to a Prometheus Pushgateway.

``AUDIOMCQ_PUSHGATEWAY`` (``host:port``) names the gateway; without it nothing is pushed. Pushes use POST
(pushadd), so a push without some metric leaves its last value standing, and never stop the work: a gateway that
cannot be reached is logged and skipped.
"""

from __future__ import annotations

import logging
import os
import re

log = logging.getLogger(__name__)


def metric_name(prefix: str, key: str) -> str:
    """``audiomcq_train`` + ``rewards/accuracy_reward/mean`` -> ``audiomcq_train_rewards_accuracy_reward_mean``."""
    return f"{prefix}_" + re.sub(r"[^a-zA-Z0-9_]", "_", key).strip("_")


def push(job: str, grouping: dict[str, str], values: dict[str, float], prefix: str) -> bool:
    """Push ``values`` as gauges named ``<prefix>_<key>``; returns whether anything was pushed."""
    gateway = os.environ.get("AUDIOMCQ_PUSHGATEWAY")
    if not gateway:
        return False
    from prometheus_client import CollectorRegistry, Gauge, pushadd_to_gateway

    registry = CollectorRegistry()
    for key, value in values.items():
        Gauge(metric_name(prefix, key), f"{job} progress: {key}", registry=registry).set(value)
    try:
        pushadd_to_gateway(gateway, job=job, grouping_key=grouping, registry=registry)
    except OSError as err:
        log.warning("pushgateway %s unreachable: %s", gateway, err)
        return False
    return True

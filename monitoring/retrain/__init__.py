"""The retrain trigger: Alertmanager webhook → decisions → one training pipeline run.

``RetrainTrigger`` takes the decisions (dedup, cooldown, one run in flight), ``create_app``
puts Alertmanager's webhook in front of it, and a ``PipelineLauncher`` starts the run.
"""

from monitoring.retrain.launcher import (
    CommandLauncher,
    KfpLocalLauncher,
    KubeflowLauncher,
    LaunchRequest,
    LaunchResult,
    PipelineLauncher,
)
from monitoring.retrain.models import Decision, DecisionKind, ManualRequest, RunRecord, WebhookMessage
from monitoring.retrain.state import StateStore
from monitoring.retrain.trigger import RetrainTrigger

__all__ = [
    "RetrainTrigger",
    "StateStore",
    "PipelineLauncher",
    "KfpLocalLauncher",
    "KubeflowLauncher",
    "CommandLauncher",
    "LaunchRequest",
    "LaunchResult",
    "WebhookMessage",
    "ManualRequest",
    "Decision",
    "DecisionKind",
    "RunRecord",
]

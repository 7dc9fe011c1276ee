"""The closed loop on one machine: start the real parts, drive traffic, wait for milestones.

``stack`` starts and stops the processes (model servers, router, retrain trigger, drift
exporter, Prometheus, Alertmanager) on 127.0.0.1; ``configs`` derives Prometheus' and
Alertmanager's files from the repository's own; ``traffic`` replays held-out events as users
and injects drift (a shifted population); ``waits`` reads each milestone from the part that
owns it (alert firing, run started, version registered, rollout started); ``oncall`` records
what would have paged someone. Used by ``tests/e2e/test_closed_loop.py`` and ``marquee demo``.
Import the submodules; this package imports nothing at import time.
"""

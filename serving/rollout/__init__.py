"""Rollouts that decide by themselves: spec, status, state machine, analysis, controller.

``spec`` (the ModelRollout schema), ``status`` (the persisted record), ``machine`` (the pure
``next_status``), ``analysis`` (window statistics → an outcome), ``store`` (file and Kubernetes
status backends), ``sources`` (router stats or Prometheus), ``controller`` (the loop that
applies decisions to the router and the registry) and ``cli`` (``marquee rollout``).
Import the submodules; this package imports nothing at import time.
"""

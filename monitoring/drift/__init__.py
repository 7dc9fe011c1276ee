"""The drift check: payload-log windows against a model's training reference.

``run_check`` computes (``monitoring.drift.job``), ``marquee drift check`` reads, publishes
and exports (``monitoring.drift.cli``); ``monitoring.drift.scenarios`` plants drift.
"""

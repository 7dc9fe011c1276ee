"""The rollout router: an async gateway in front of the model servers.

``schema`` (HTTP bodies), ``assignment`` (sticky variants), ``stats`` (windowed per-variant
statistics), ``metrics`` (Prometheus), ``exposure`` (exposure and feedback logs), ``app`` (the
Starlette application), ``settings`` and ``cli`` (``marquee router``).
"""

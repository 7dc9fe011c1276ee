"""The rollout router: an async gateway in front of the model servers.

``schema`` (HTTP bodies), ``assignment`` (sticky variants), ``core`` (strategies and feedback
credit, no HTTP), ``app`` (the ASGI application), ``upstream`` and ``rawhttp`` (the KServe V1
client to model servers), ``stats`` (windowed per-variant statistics for ``/admin/stats``),
``metrics`` (Prometheus), ``exposure`` (exposure and feedback logs), ``errors``,
``settings`` and ``cli`` (``marquee router``).
"""

"""Marquee platform core: settings, object store, model bundle, registry, CLI."""

__version__ = "0.1.0"
__all__ = ["__version__"]

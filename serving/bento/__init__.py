"""The BentoML model server: ``marquee serve --runtime bentoml``."""

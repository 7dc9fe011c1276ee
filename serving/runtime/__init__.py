"""The serving runtime: a loaded bundle, its FAISS index and ``recommend``."""

from serving.runtime.runtime import Recommendation, Runtime, StageBudgets

__all__ = ["Recommendation", "Runtime", "StageBudgets"]

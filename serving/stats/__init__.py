"""Statistics that let a rollout decide by itself.

Pure functions on small arrays and counts, no I/O: ranking agreement for shadow traffic
(:mod:`.ranking`), anytime-valid tests of click-through (:mod:`.sequential`), the
sample-ratio-mismatch check (:mod:`.srm`) and team-draft interleaving with its sign tests
(:mod:`.interleaving`).
"""

from __future__ import annotations

from serving.stats.interleaving import (
    InterleavedList,
    SignTestResult,
    credit,
    sequential_sign_test,
    sign_test,
    team_draft,
)
from serving.stats.ranking import (
    coverage,
    exposure_gini,
    kendall_tau_shared,
    rank_biased_overlap,
    topk_overlap,
)
from serving.stats.sequential import MSPRTResult, clustered_rate_variance, msprt_two_proportions
from serving.stats.srm import SRMResult, srm_check

__all__ = [
    "InterleavedList", "SignTestResult", "credit", "sequential_sign_test", "sign_test",
    "team_draft", "coverage", "exposure_gini", "kendall_tau_shared", "rank_biased_overlap",
    "topk_overlap", "MSPRTResult", "msprt_two_proportions", "clustered_rate_variance",
    "SRMResult", "srm_check",
]

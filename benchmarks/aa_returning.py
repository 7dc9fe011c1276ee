"""A/A false decisions when users come back: per-list A/B test vs per-list interleaving.

    .venv/bin/python benchmarks/aa_returning.py [VISITS]   (needs the lists cached by
    benchmarks/replay.py under $TMPDIR/marquee-replay-bench)

The production model's lists for the 943 MovieLens held-out users and the replay's click model
(position bias 1, relevant 0.4, noise 0.02) give each user a click probability per visit and,
for interleaving the model with itself, a probability that a visit is won by either side.
2,000 users drawn with replacement each make VISITS visits, shuffled in time; A/B assignment is
sticky per user. The controller's tests as they counted before per-user A/B statistics: mSPRT on
clicked lists / lists (at least 200 per variant) and the sequential sign test on visit wins (at
least 100), alpha 0.05, checked after every visit. Prints the share of 400 streams that ever
decide, for both tests.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from serving.replay.power import (  # noqa: E402
    click_probability,
    interleave_win_probabilities,
    msprt_log_lr,
    sign_test_log_lr,
)
from serving.replay.users import ClickModel, load_users  # noqa: E402


def main() -> None:
    visits = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    work = Path(tempfile.gettempdir()) / "marquee-replay-bench"
    users = load_users(work / "holdout.parquet", work / "holdout.parquet", order="random", seed=0)
    lists = {int(u): v for u, v in
             json.loads((work / "lists-production.json").read_text())["lists"].items()}
    cm = ClickModel(1.0, 0.4, 0.02)
    p = np.array([click_probability(lists[u.user_id], u.future, cm) for u in users])
    il = np.array([interleave_win_probabilities(lists[u.user_id], lists[u.user_id], u.future, cm)
                   for u in users])
    rng = np.random.default_rng(0)
    n_users, streams, thr = 2000, 400, np.log(1 / 0.05)
    fp_ab = fp_il = 0
    for _ in range(streams):
        us = rng.integers(0, len(users), n_users)
        arm = rng.integers(0, 2, n_users)
        order = np.repeat(np.arange(n_users), visits)
        rng.shuffle(order)
        u, a = us[order], arm[order]
        click = rng.random(order.size) < p[u]
        n_a, n_b = np.cumsum(a == 0), np.cumsum(a == 1)
        s_a, s_b = np.cumsum(click & (a == 0)), np.cumsum(click & (a == 1))
        ok = (n_a >= 200) & (n_b >= 200)
        lr = np.where(ok, msprt_log_lr(s_a, np.maximum(n_a, 1), s_b, np.maximum(n_b, 1)), -np.inf)
        fp_ab += bool((lr >= thr).any())
        r, decisive = rng.random(order.size), il[u].sum(1)
        wb, wa = np.cumsum(r < decisive / 2), np.cumsum((r >= decisive / 2) & (r < decisive))
        lr2 = np.where(wa + wb >= 100, sign_test_log_lr(wb, wa), -np.inf)
        fp_il += bool((lr2 >= thr).any())
    print(f"visits per user {visits}: A/A false decisions in {streams} streams of {n_users} users: "
          f"A/B per-list mSPRT {fp_ab / streams:.3f}, interleaving per-list sign test "
          f"{fp_il / streams:.3f} (alpha 0.05)")


if __name__ == "__main__":
    main()

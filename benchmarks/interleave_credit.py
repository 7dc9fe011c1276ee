"""Would a Rao-Blackwellised team-draft credit make interleaving more sensitive?

    .venv/bin/python benchmarks/interleave_credit.py [POSITION_BIAS [RELEVANT_CLICK NOISE_CLICK]]
    (needs the lists cached by benchmarks/replay.py under $TMPDIR/marquee-replay-bench)

Fixed-horizon users needed, A/B ÷ interleaving, from exact per-visit moments under the replay's
click model (position bias 1, relevant 0.4, noise 0.02 unless given; ``0 1 0`` is the issue's
own model: every held-out item shown is clicked) for three pairs of cached lists:
- A/B: 2·(p_a q_a + p_b q_b)/d² on the clicked-visit rate (what the controller tests), and
  "A/B clicks": the same on clicks per list (click-through as clicks / impressions), with the
  per-visit variance of the click count, between users included;
- TD sign: Var/mean² of the visit outcome in {−1, 0, +1} (the router's credit);
- TD linear: the per-visit difference of clicks credited to each team;
- RB linear: the same difference averaged over every draft (coin-flip sequence) that shows the
  same list, i.e. its conditional expectation given what the user saw: same mean, less
  variance. The router does not use it: the gain below did not justify it.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from serving.replay.power import _diff_distribution, _Script  # noqa: E402
from serving.replay.users import ClickModel, load_users  # noqa: E402
from serving.stats.interleaving import TEAM_A, team_draft  # noqa: E402

PAIRS = {"more epochs": ("production", "production-10ep"), "ranker on": ("retrieval", "production"),
         "extreme": ("weak", "better")}


def main() -> None:
    work = Path(tempfile.gettempdir()) / "marquee-replay-bench"
    users = load_users(work / "holdout.parquet", work / "holdout.parquet", order="random", seed=0)
    lists = {n: {int(u): v for u, v in json.loads((work / f"lists-{n}.json").read_text())
                 ["lists"].items()} for pair in PAIRS.values() for n in pair}
    args = [float(a) for a in sys.argv[1:]]
    cm = ClickModel(*(args + [1.0, 0.4, 0.02][len(args):]))
    k, flips = 10, 5
    for name, (a, b) in PAIRS.items():
        ab, td, lin, rb, cl = [], [], [], [], []
        for u in users:
            la, lb = lists[a][u.user_id], lists[b][u.user_id]
            ab.append([1 - np.prod(1 - cm.probabilities(x, u.future)) for x in (la, lb)])
            ps = [cm.probabilities(x, u.future) for x in (la, lb)]  # clicks per list: mean, E[X²]
            cl.append([(p.sum(), (p * (1 - p)).sum() + p.sum() ** 2) for p in ps])
            drafts = [team_draft(la, lb, k, _Script(bits)) for bits in range(2 ** flips)]
            groups: dict[tuple[int, ...], list] = {}
            for d in drafts:
                groups.setdefault(tuple(d.items), []).append(d)
            pc = pb = m1 = m2 = r1 = r2 = 0.0
            for items, ds in groups.items():
                p = cm.probabilities(list(items), u.future)
                signs = [np.where([t != TEAM_A for t in d.teams], 1.0, -1.0) for d in ds]
                for s in signs:
                    a_wins, b_wins = _diff_distribution(p[s < 0], p[s > 0])
                    pc, pb = pc + b_wins / len(drafts), pb + a_wins / len(drafts)
                    m = float((p * s).sum())
                    m1 += m / len(drafts)
                    m2 += (float((p * (1 - p)).sum()) + m * m) / len(drafts)
                sbar = np.mean(signs, axis=0)
                m = float((p * sbar).sum())
                w = len(ds) / len(drafts)
                r1 += w * m
                r2 += w * (float((p * (1 - p) * sbar ** 2).sum()) + m * m)
            td.append((pc, pb))
            lin.append((m1, m2))
            rb.append((r1, r2))
        abp, tdp = np.array(ab), np.array(td)
        pa, pbb = abp.mean(axis=0)
        n_ab = 2 * (pa * (1 - pa) + pbb * (1 - pbb)) / (pbb - pa) ** 2
        clp = np.array(cl).mean(axis=0)  # [[mean_a, m2_a], [mean_b, m2_b]]
        var_a, var_b = clp[0, 1] - clp[0, 0] ** 2, clp[1, 1] - clp[1, 0] ** 2
        n_cl = 2 * (var_a + var_b) / (clp[1, 0] - clp[0, 0]) ** 2
        c, bb = tdp.mean(axis=0)
        n_td = ((c + bb) - (c - bb) ** 2) / (c - bb) ** 2

        def n_of(x: list[tuple[float, float]]) -> float:
            arr = np.array(x)
            mean = arr[:, 0].mean()
            return (arr[:, 1].mean() - mean ** 2) / mean ** 2

        print(f"{name:12s} A/B {n_ab:9.0f} | A/B clicks {n_cl:9.0f} ({n_cl / n_td:.1f}× TD sign) | "
              f"TD sign {n_td:8.0f} ({n_ab / n_td:.1f}×) | "
              f"TD linear {n_of(lin):8.0f} ({n_ab / n_of(lin):.1f}×) | "
              f"RB linear {n_of(rb):8.0f} ({n_ab / n_of(rb):.1f}×)")


if __name__ == "__main__":
    main()

"""A PyTorch DCN-v2 ranker on the LightGBM ranker's own training lists, alone and blended.

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/nn_ranker_sweep.py --seeds 42 43 44

Validation only (the test split is never scored): MovieLens-100k, the per-user random 75/25
split (seed 42) of ``benchmarks/quality.py``, and the validation split carved from its train
part the way ``quality.py`` carves it. For each seed the full ``set`` model (two-tower top-200
→ LightGBM ``rank_xendcg``) is fitted on the carved fit part; its ranker's training lists
(the ``RankExamples`` that ``Ranker.fit_examples`` receives: features, 0/1 labels, lists of
200) are captured on the way, with no second feature pipeline. A DCN-v2 (cross network in
parallel with an MLP) is trained on the same lists with a listwise softmax cross-entropy (as
``rank_xendcg``: softmax over the list, targets = labels / their sum), early-stopped on 10% of
the lists. Validation users are scored through ``Recommender.recommend`` with the ranker's
``score_batch`` swapped for one that computes the same candidates' feature matrices once and
returns (1 - w)·z(LightGBM) + w·z(NN), z-scored per list, for w in 0, 0.25, 0.5, 0.75, 1
(w = 0: the LightGBM scores themselves, checked against the untouched model; w = 1: the NN
alone). Several NN variants (``VARIANTS``: how the features are normalised, which ones the NN
sees, regularisation) are trained on the same fitted model's lists per seed.

Features are not all comparable between the training lists and serving: the lists come from
sub-models fitted on 80% of each user's events, serving from the model fitted on all of them,
so co-occurrence sums, popularity counts and history lengths are larger at serving (0.3–0.5
training standard deviations on seed 42). The trees barely notice; a network on globally
standardised inputs extrapolates, hence the per-list normalisation variants.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from quality import Marquee, carve, load_movielens, marquee_candidates, score  # noqa: E402

WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)
CATEGORICAL = ("age", "gender", "hour_of_day", "day_of_week")


# ---------------------------------------------------------------------------- capture
def capture_ranker_examples() -> None:
    """Keep the training lists on the ranker: ``Ranker.fit_examples`` stores what it gets."""
    from recsys.models.ranker import Ranker

    if getattr(Ranker.fit_examples, "_captures", False):
        return
    original = Ranker.fit_examples

    def fit_examples(self, ex):
        self.train_examples = ex
        return original(self, ex)

    fit_examples._captures = True
    Ranker.fit_examples = fit_examples


# ---------------------------------------------------------------------------- the network
@dataclass
class Prep:
    """Numeric columns made comparable, categorical ones as integer codes (embedded).

    ``norm``: ``global`` standardises each numeric column with the training rows' mean and
    standard deviation; ``quantile`` maps it through the training rows' empirical CDF to a
    normal score (bounded, monotone, as insensitive to a column's scale as a tree's split);
    ``list`` z-scores it within each candidate list (columns constant within a list, the
    user's history length, are standardised globally). Rows come in lists of ``n_cand``."""

    num_cols: np.ndarray
    cat_cols: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    cat_sizes: list[int]
    norm: str = "global"
    quantiles: np.ndarray | None = None
    list_const: np.ndarray | None = None  # numeric columns constant within every list
    n_cand: int = 200

    @classmethod
    def fit(cls, x: np.ndarray, norm: str = "global", n_cand: int = 200,
            drop: tuple[str, ...] = ()) -> Prep:
        from recsys.models.rank_features import FEATURES

        cat = np.array([FEATURES.index(c) for c in CATEGORICAL if c not in drop], dtype=int)
        num = np.array([j for j in range(len(FEATURES))
                        if j not in set(cat) and FEATURES[j] not in CATEGORICAL
                        and FEATURES[j] not in drop])
        xn = np.nan_to_num(x[:, num].astype(np.float64))
        mean, std = xn.mean(axis=0), xn.std(axis=0)
        sizes = [int(np.nanmax(x[:, j])) + 2 for j in cat]
        q = None
        if norm == "quantile":
            sample = xn[np.random.default_rng(0).choice(len(xn), min(len(xn), 300_000),
                                                        replace=False)]
            q = np.quantile(sample, np.linspace(0, 1, 1001), axis=0).T  # [n_num, 1001]
        within = xn.reshape(-1, n_cand, num.size).std(axis=1).max(axis=0)
        return cls(num, cat, mean.astype(np.float32),
                   np.where(std > 1e-6, std, 1.0).astype(np.float32), sizes, norm, q,
                   within < 1e-6, n_cand)

    def numeric(self, x: np.ndarray) -> np.ndarray:
        xn = np.nan_to_num(x[:, self.num_cols]).astype(np.float64)
        if self.norm == "quantile":
            from scipy.special import ndtri

            u = np.empty_like(xn)
            for j in range(xn.shape[1]):
                qj = self.quantiles[j]
                # ties (many equal values): the middle of their share of the quantiles
                lo = np.searchsorted(qj, xn[:, j], side="left")
                hi = np.searchsorted(qj, xn[:, j], side="right")
                u[:, j] = (lo + hi) / (2.0 * qj.size)
            return ndtri(np.clip(u, 0.001, 0.999))
        out = (xn - self.mean) / self.std
        if self.norm == "list":
            blocks = xn.reshape(-1, self.n_cand, xn.shape[1])
            z = (blocks - blocks.mean(axis=1, keepdims=True)) / (
                blocks.std(axis=1, keepdims=True) + 1e-6)
            z = z.reshape(xn.shape)
            out = np.where(self.list_const[None, :], out, z)
        return out

    def __call__(self, x: np.ndarray) -> tuple[Any, Any]:
        import torch

        xn = np.clip(self.numeric(x), -10, 10).astype(np.float32)
        xc = np.nan_to_num(x[:, self.cat_cols]).astype(np.int64)
        xc = np.clip(xc, 0, np.array(self.cat_sizes) - 1)
        return torch.from_numpy(xn), torch.from_numpy(xc)


def make_dcn(n_num: int, cat_sizes: list[int], emb_dim: int, n_cross: int,
             hidden: tuple[int, ...], dropout: float):
    import torch
    from torch import nn

    class DCNv2(nn.Module):
        """DCN-v2 (full-rank cross layers x_{l+1} = x0 ⊙ (W x_l + b) + x_l) in parallel with
        an MLP, both over [standardised numbers, embeddings of the categorical codes]."""

        def __init__(self):
            super().__init__()
            self.embs = nn.ModuleList(nn.Embedding(n, emb_dim) for n in cat_sizes)
            d = n_num + emb_dim * len(cat_sizes)
            self.cross = nn.ModuleList(nn.Linear(d, d) for _ in range(n_cross))
            layers: list[nn.Module] = []
            h = d
            for k in hidden:
                layers += [nn.Linear(h, k), nn.ReLU(), nn.Dropout(dropout)]
                h = k
            self.deep = nn.Sequential(*layers)
            self.out = nn.Linear(d + h, 1)

        def forward(self, num, cat):
            x0 = torch.cat([num, *(e(cat[:, i]) for i, e in enumerate(self.embs))], dim=1)
            x = x0
            for lin in self.cross:
                x = x0 * lin(x) + x
            return self.out(torch.cat([x, self.deep(x0)], dim=1)).squeeze(1)

    return DCNv2()


def list_ndcg(scores: np.ndarray, labels: np.ndarray, k: int = 10) -> float:
    """Mean NDCG@k over lists (rows) with binary labels."""
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (np.take_along_axis(labels, top, 1) * disc).sum(1)
    ideal = (-np.sort(-labels, axis=1)[:, :k] * disc).sum(1)
    ok = ideal > 0
    return float((dcg[ok] / ideal[ok]).mean())


@dataclass
class NNRanker:
    prep: Prep
    model: Any
    report: dict[str, Any]

    def predict(self, x: np.ndarray) -> np.ndarray:
        import torch

        self.model.eval()
        out = []
        with torch.no_grad():
            for s in range(0, x.shape[0], 50_000):
                num, cat = self.prep(x[s:s + 50_000])
                out.append(self.model(num, cat).numpy())
        return np.concatenate(out) if out else np.zeros(0, np.float32)


def train_nn(ex, seed: int, args: argparse.Namespace, log) -> NNRanker:
    """Listwise softmax cross-entropy on the ranker's lists; 10% of the lists for early stop."""
    import torch

    ex = ex.with_positives()  # what the LightGBM ranker trains on
    n_cand = int(ex.groups[0])
    if not np.all(ex.groups == n_cand):
        raise ValueError("lists of different lengths; this script expects equal lists")
    n_lists = ex.groups.size
    rng = np.random.default_rng(seed)
    hold = np.zeros(n_lists, dtype=bool)
    hold[rng.choice(n_lists, int(round(0.1 * n_lists)), replace=False)] = True
    row_hold = np.repeat(hold, n_cand)
    prep = Prep.fit(ex.x[~row_hold], args.norm, n_cand, tuple(args.drop))
    num, cat = prep(ex.x)
    y = torch.from_numpy(ex.y.astype(np.float32))
    num = num.view(n_lists, n_cand, num.shape[-1])
    cat = cat.view(n_lists, n_cand, cat.shape[-1])
    y = y.view(n_lists, n_cand)
    tr_idx, ho_idx = np.flatnonzero(~hold), np.flatnonzero(hold)
    torch.manual_seed(seed)
    model = make_dcn(num.shape[-1], prep.cat_sizes, args.emb_dim, args.cross,
                     tuple(args.hidden), args.dropout)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    y_ho = y[ho_idx].numpy()

    def flat(lists):
        rows = len(lists) * n_cand
        return num[lists].reshape(rows, num.shape[-1]), cat[lists].reshape(rows, cat.shape[-1])

    def holdout_ndcg() -> float:
        model.eval()
        with torch.no_grad():
            s = model(*flat(ho_idx)).view(len(ho_idx), n_cand)
        return list_ndcg(s.numpy(), y_ho)

    t0 = time.perf_counter()
    best, best_state, best_epoch, history = -1.0, None, 0, []
    for epoch in range(1, args.epochs + 1):
        model.train()
        perm = rng.permutation(tr_idx)
        total = 0.0
        for s in range(0, perm.size, args.batch_lists):
            b = torch.from_numpy(perm[s:s + args.batch_lists])
            logits = model(*flat(b)).view(len(b), n_cand)
            target = y[b] / y[b].sum(dim=1, keepdim=True)
            loss = -(target * torch.log_softmax(logits, dim=1)).sum(dim=1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(b)
        nd = holdout_ndcg()
        history.append(round(nd, 4))
        log(f"      epoch {epoch}: loss {total / tr_idx.size:.4f} hold-out list ndcg@10 {nd:.4f}")
        if nd > best:
            best, best_epoch = nd, epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        elif epoch - best_epoch >= args.patience:
            break
    model.load_state_dict(best_state)
    seconds = time.perf_counter() - t0
    return NNRanker(prep, model, {"seconds": seconds, "best_epoch": best_epoch,
                                  "epochs_run": len(history), "holdout_ndcg": best,
                                  "history": history, "lists": int(n_lists),
                                  "rows": int(ex.y.size)})


# ---------------------------------------------------------------------------- scoring hook
def zscore(s: np.ndarray) -> np.ndarray:
    s = s.astype(np.float64)
    return (s - s.mean(axis=1, keepdims=True)) / (s.std(axis=1, keepdims=True) + 1e-9)


class BlendScorer:
    """Stands in for the ranker in ``Recommender.recommend``: the same candidates' feature
    matrices (computed once, as ``Ranker.score_batch`` computes them), scored by the LightGBM
    ranker and the NN, and blended with weight ``w`` on the NN."""

    def __init__(self, ranker, nn: NNRanker):
        self.ranker, self.nn, self.w = ranker, nn, 0.0
        self.cfg = ranker.cfg
        self._cache: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}

    def score_batch(self, rec, rows, user_ids, cand, retrieval_scores) -> np.ndarray:
        key = rows.tobytes() + cand.tobytes()
        if key not in self._cache:
            x = np.vstack([rec.rank_ctx.features(rec.user_view(int(r)), cand[j],
                                                 retrieval_scores[j])
                           for j, r in enumerate(rows)])
            lgb = self.ranker._predict(x, threads=self.cfg.num_threads).reshape(cand.shape)
            self._cache[key] = (lgb, self.nn.predict(x).reshape(cand.shape))
        lgb, nn = self._cache[key]
        if self.w == 0.0:
            return lgb
        return ((1 - self.w) * zscore(lgb) + self.w * zscore(nn)).astype(np.float32)


# ---------------------------------------------------------------------------- driver
def dump(path: Path, rec, val_users: np.ndarray) -> None:
    """The ranker's training lists and the validation users' candidates, feature matrices and
    LightGBM scores (as ``Ranker.score_batch`` computes them), for NN experiments offline."""
    ex = rec.ranker.train_examples.with_positives()
    rows, cand, sc = rec.candidates(val_users, rec.config.ranker.n_candidates, True)
    x = np.vstack([rec.rank_ctx.features(rec.user_view(int(r)), cand[j], sc[j])
                   for j, r in enumerate(rows)])
    lgb = rec.ranker._predict(x, threads=rec.ranker.cfg.num_threads).reshape(cand.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, x=ex.x, y=ex.y, groups=ex.groups, val_x=x, val_users=val_users,
             val_items=rec.item_ids[cand], val_lgb=lgb)


CONTEXT = ("history_length_log", *CATEGORICAL)  # constant within a list
# NN variants trained on the same lists (each: overrides of the command-line defaults).
# ``spec``: as the brief describes it (global standardisation, every feature, embeddings of
# the categorical codes); ``list``: features z-scored within each list, more regularisation
# (best blend on seed 42's validation among 8 settings tried); ``list-noctx``: the same
# without the list-constant user/context columns (best NN alone on seed 42's validation).
VARIANTS: dict[str, dict[str, Any]] = {
    "spec": {},
    "list": {"norm": "list", "dropout": 0.3, "weight_decay": 1e-4},
    "list-noctx": {"norm": "list", "dropout": 0.3, "weight_decay": 1e-4, "drop": list(CONTEXT)},
}


def run_seed(seed: int, data, fit, val, args, log) -> dict[str, Any]:
    n_items = len(data.items)
    val_users = val["user_id"].unique()
    cfg = {**marquee_candidates(quick=False)["set"], "seed": seed}
    t0 = time.perf_counter()
    mq = Marquee(cfg).fit(fit, data.users, data.items)
    fit_s = time.perf_counter() - t0
    rec = mq.rec
    base = score(mq.recommend(val_users), val, fit, n_items)["ndcg_at_10"]
    log(f"  seed {seed}: full model fitted in {fit_s:.0f}s; validation ndcg@10 {base:.4f}; "
        f"ranker {rec.ranker.report}")
    out: dict[str, Any] = {"seed": seed, "baseline": base, "fit_seconds": fit_s,
                           "variants": {}}
    if args.dump is not None:
        dump(args.dump / f"seed{seed}.npz", rec, val_users)
    if args.baseline_only:
        return out
    fitted = rec.ranker
    for name in args.variants:
        v_args = argparse.Namespace(**{**vars(args), **VARIANTS[name]})
        log(f"  seed {seed}, NN {name}: {VARIANTS[name]}")
        nn = train_nn(fitted.train_examples, seed, v_args, log)
        log(f"  seed {seed}, NN {name}: trained in {nn.report['seconds']:.0f}s, best epoch "
            f"{nn.report['best_epoch']} (hold-out list ndcg@10 {nn.report['holdout_ndcg']:.4f})")
        res: dict[str, Any] = {"nn": nn.report}
        blend = BlendScorer(fitted, nn)
        rec.ranker = blend
        try:
            for w in WEIGHTS:
                blend.w = w
                res[f"w={w}"] = score(mq.recommend(val_users), val, fit, n_items)["ndcg_at_10"]
                log(f"    w={w}: validation ndcg@10 {res[f'w={w}']:.4f}")
        finally:
            rec.ranker = fitted
        if abs(res["w=0.0"] - base) > 1e-9:
            raise AssertionError(f"the hook changes the baseline: {res['w=0.0']} vs {base}")
        out["variants"][name] = res
    return out


def table(results: list[dict[str, Any]], variants: list[str]) -> str:
    cols = ["baseline (LightGBM)", *(f"w={w}" for w in WEIGHTS[1:-1]), "NN alone (w=1)",
            "NN train (s)", "NN epochs (best/run)"]
    keys = [f"w={w}" for w in WEIGHTS[1:]]
    lines = ["| NN variant | seed | " + " | ".join(cols) + " |",
             "|---" * (len(cols) + 2) + "|"]
    for name in variants:
        rows = [r for r in results if name in r["variants"]]
        for r in rows:
            v = r["variants"][name]
            cells = [f"{r['baseline']:.4f}", *(f"{v[k]:.4f}" for k in keys),
                     f"{v['nn']['seconds']:.0f}",
                     f"{v['nn']['best_epoch']}/{v['nn']['epochs_run']}"]
            lines.append(f"| {name} | {r['seed']} | " + " | ".join(cells) + " |")
        if rows:
            means = [np.mean([r["baseline"] for r in rows]),
                     *(np.mean([r["variants"][name][k] for r in rows]) for k in keys)]
            secs = np.mean([r["variants"][name]["nn"]["seconds"] for r in rows])
            lines.append(f"| {name} | **mean of {len(rows)}** | "
                         + " | ".join(f"**{m:.4f}**" for m in means) + f" | {secs:.0f} | |")
    if not any(r["variants"] for r in results):
        lines.append("| — | baselines | " + ", ".join(
            f"{r['seed']}: {r['baseline']:.4f}" for r in results) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    p.add_argument("--cache", type=Path, default=None,
                   help="MovieLens cache (default: /work/main's if present, else this tree's)")
    p.add_argument("--baseline-only", action="store_true")
    p.add_argument("--dump", type=Path, default=None,
                   help="save each seed's training lists and validation matrices here")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--patience", type=int, default=3)
    p.add_argument("--batch-lists", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=1e-5)
    p.add_argument("--emb-dim", type=int, default=4)
    p.add_argument("--cross", type=int, default=3)
    p.add_argument("--hidden", type=int, nargs="+", default=[128, 64])
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--norm", choices=("global", "quantile", "list"), default="global")
    p.add_argument("--drop", nargs="*", default=[], help="features the NN does not see")
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS),
                   help="NN variants (overrides of the options above) trained per seed")
    p.add_argument("--json", type=Path, default=REPO / ".marquee" / "bench" /
                   "nn_ranker_sweep.json")
    args = p.parse_args(argv)

    import torch
    from threadpoolctl import threadpool_limits

    from recsys.data.split import per_user_random_split

    torch.set_num_threads(1)
    threadpool_limits(1)
    capture_ranker_examples()
    started = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - started:6.0f}s] {msg}", flush=True)

    cache = args.cache
    if cache is None:
        shared = Path("/work/main/.marquee/data/cache")
        cache = shared if shared.exists() else REPO / ".marquee" / "data" / "cache"
    data = load_movielens(cache)
    train = per_user_random_split(data.interactions, 0.25, seed=42).train
    fit, val = carve(train, "random")  # the test split is never used
    log(f"fit {len(fit)} validation {len(val)} users {val['user_id'].nunique()}")
    results = []
    for seed in args.seeds:
        results.append(run_seed(seed, data, fit, val, args, log))
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"args": {k: (str(v) if isinstance(v, Path) else v)
                                                  for k, v in vars(args).items()},
                                         "results": results}, indent=2, default=float))
    print(table(results, args.variants))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

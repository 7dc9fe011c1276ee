"""Hyper-parameter search with Optuna: TPE sampler, median pruning on validation NDCG@10.

``tune(train, val, users, items, n_trials, timeout, seed)`` fits the recommender on ``train``
once per trial and scores it on ``val``. Each retrieval epoch reports the retrieval-only
NDCG@10 of a sample of validation users, so the median pruner stops hopeless trials before
they pay for the ranker; the full model's NDCG@10 is the objective. Returns the best
parameters (a nested dict that ``RecommenderConfig.model_validate`` accepts on top of the base
config, see :func:`apply_params`) and a JSON-ready summary of the study.
"""

from __future__ import annotations

import copy
import logging
import time
from collections import Counter
from typing import Any

import numpy as np
import pandas as pd

from recsys.config import RecommenderConfig, RetrievalConfig
from recsys.metrics import evaluate

__all__ = ["apply_params", "empty_summary", "failure_reasons", "search_space", "tune"]

log = logging.getLogger(__name__)


def search_space(trial: Any, base: RecommenderConfig) -> dict[str, dict[str, Any]]:
    """The parameters one trial tries, as a nested override of the base config."""
    # Sizes and epochs are searched around the base configuration (half to twice), so a
    # small base (the demo's) keeps every trial small and a large one is not cut down.
    # Never beyond what the configuration accepts: a trial outside a field's bounds fails
    # its validation and is lost (epochs 300 searched up to 600, above retrieval.epochs' 500).
    r = base.retrieval
    dims = sorted({max(8, r.dim // 2), r.dim, min(_most(RetrievalConfig, "dim"), r.dim * 2)})
    retrieval = {
        "dim": trial.suggest_categorical("retrieval.dim", dims),
        "lr": trial.suggest_float("retrieval.lr", 1e-3, 1e-2, log=True),
        "epochs": trial.suggest_int("retrieval.epochs", max(1, r.epochs // 2), min(
            _most(RetrievalConfig, "epochs"), max(r.epochs * 2, 2))),
        "temperature": trial.suggest_float("retrieval.temperature", 0.03, 0.2, log=True),
        "history_mode": trial.suggest_categorical("retrieval.history_mode", ["causal", "set"]),
        "separate_history_table": trial.suggest_categorical(
            "retrieval.separate_history_table", [False, True]),
        "history_dropout": trial.suggest_float("retrieval.history_dropout", 0.0, 0.5),
        "id_dropout": trial.suggest_float("retrieval.id_dropout", 0.0, 0.5),
    }
    params: dict[str, dict[str, Any]] = {"retrieval": retrieval}
    if base.ranker.enabled:
        params["ranker"] = {
            "objective": trial.suggest_categorical(
                "ranker.objective", ["lambdarank", "rank_xendcg", "binary"]),
            "learning_rate": trial.suggest_float("ranker.learning_rate", 0.02, 0.2, log=True),
            "num_leaves": trial.suggest_int("ranker.num_leaves", 7, 63, log=True),
            "min_child_samples": trial.suggest_int("ranker.min_child_samples", 10, 200,
                                                   log=True),
            "ease_lambda": trial.suggest_float("ranker.ease_lambda", 50.0, 2000.0, log=True),
            # 1: plain EASE; below, pairs close in each user's time order weigh more
            "ease_time_share": trial.suggest_float("ranker.ease_time_share", 0.0, 1.0),
            "label_mode": trial.suggest_categorical("ranker.label_mode",
                                                    ["temporal", "random"]),
        }
    return params


def _most(model: type, name: str) -> int:
    """The largest value ``model``'s field ``name`` accepts (its ``le`` bound)."""
    return next(m.le for m in model.model_fields[name].metadata if getattr(m, "le", None)
                is not None)


def apply_params(base: RecommenderConfig, params: dict[str, dict[str, Any]]
                 ) -> RecommenderConfig:
    """``base`` with the nested ``params`` (section → field → value) applied."""
    data = copy.deepcopy(base.model_dump())
    for section, values in params.items():
        if isinstance(values, dict):
            data.setdefault(section, {}).update(values)
        else:
            data[section] = values
    return RecommenderConfig.model_validate(data)


def _ndcg(rec: Any, users: np.ndarray, val: pd.DataFrame, train: pd.DataFrame,
          stages: str) -> float:
    recs = rec.recommend(users, k=10, stages=stages)
    return float(evaluate(recs, val[val["user_id"].isin(users)], train, k_values=(10,))
                 ["ndcg_at_10"])


def tune(train: pd.DataFrame, val: pd.DataFrame, users: pd.DataFrame, items: pd.DataFrame,
         n_trials: int = 10, timeout: float | None = None, seed: int = 42,
         base_config: RecommenderConfig | dict | None = None, prune_users: int = 300
         ) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Search the recommender's hyper-parameters; returns ``(best_params, summary)``.

    ``train``/``val``: interaction frames (``val`` holds the events to predict, e.g. each
    user's last ones); ``timeout`` in seconds bounds the whole study (None: no bound);
    ``prune_users``: validation users scored after each epoch for pruning.
    """
    import optuna

    from recsys.recommender import Recommender

    base = (RecommenderConfig.model_validate(base_config) if isinstance(base_config, dict)
            else base_config or RecommenderConfig())
    val_users = np.sort(val["user_id"].unique())
    rng = np.random.default_rng(seed)
    probe = np.sort(rng.choice(val_users, min(prune_users, val_users.size), replace=False)) \
        if val_users.size else val_users

    def objective(trial: optuna.Trial) -> float:
        params = search_space(trial, base)
        cfg = apply_params(base, params)
        rec = Recommender(cfg)

        def report(epoch: int, _loss: float) -> None:
            if probe.size == 0:
                return
            trial.report(_ndcg(rec, probe, val, train, "retrieval"), epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()

        started = time.perf_counter()
        try:
            rec.fit(train, users, items, progress=False, on_epoch=report)
            score = _ndcg(rec, val_users, val, train, "full")
        except ValueError as exc:  # the trial fails (caught below); its reason is recorded
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}"[:500])
            raise
        trial.set_user_attr("fit_seconds", round(time.perf_counter() - started, 2))
        trial.set_user_attr("retrieval_ndcg_at_10",
                            _ndcg(rec, val_users, val, train, "retrieval"))
        return score

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    budget = "no time budget" if timeout is None else f"the {timeout:g} s budget"
    study_started = time.perf_counter()

    def progress(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        # optuna's own per-trial lines are silenced above: this is the step log's progress
        state = trial.state.name
        if trial.state == optuna.trial.TrialState.COMPLETE:
            outcome = f"{state} ndcg@10 {trial.value:.4f}"
        elif trial.state == optuna.trial.TrialState.PRUNED:
            outcome = f"{state} after epoch {(trial.last_step or 0) + 1}"
        else:
            outcome = f"{state} ({trial.user_attrs.get('error', 'see the warning above')})"
        complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        best = (f"best {study.best_value:.4f} (trial {study.best_trial.number})" if complete
                else "no trial completed yet")
        log.info("tune: trial %d/%d %s; %s; %.1f s of %s used", trial.number + 1, n_trials,
                 outcome, best, time.perf_counter() - study_started, budget)

    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(5, n_trials)),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1))
    study.optimize(objective, n_trials=n_trials, timeout=timeout, catch=(ValueError,),
                   callbacks=[progress])
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    summary = empty_summary()
    summary.update(
        n_trials=len(study.trials), completed=len(done),
        pruned=sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials),
        failed=sum(t.state == optuna.trial.TrialState.FAIL for t in study.trials),
        trials=[{"number": t.number, "state": t.state.name, "value": t.value,
                 "params": t.params, **t.user_attrs} for t in study.trials])
    if not done:
        why = failure_reasons(summary["trials"])
        log.warning("tune: no trial completed%s; no parameters to apply",
                    f" ({why})" if why else "")
        return {}, summary
    best = study.best_trial
    params = _nest(best.params)
    summary.update(best_value=best.value, best_params=params, best_trial=best.number)
    return params, summary


def empty_summary() -> dict[str, Any]:
    """The search summary's shape before any trial: what a skipped search records too."""
    return {"n_trials": 0, "completed": 0, "pruned": 0, "failed": 0, "trials": [],
            "best_value": None, "best_params": {}, "best_trial": None}


def failure_reasons(trials: list[dict[str, Any]]) -> str:
    """The commonest errors of a summary's failed trials, counted ("2x ValueError: …"); ""
    when none recorded one."""
    reasons = Counter(t["error"] for t in trials if "error" in t)
    return "; ".join(f"{n}x {text}" for text, n in reasons.most_common(3))


def _nest(flat: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for key, value in flat.items():
        section, _, name = key.partition(".")
        out.setdefault(section, {})[name] = value
    return out

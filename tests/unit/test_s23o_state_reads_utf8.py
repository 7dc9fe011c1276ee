"""State files are read as UTF-8 whatever the locale (session 23).

The writers write UTF-8 (``marquee.durable.write_text_atomic``), but the retrain trigger's run
records and decision log, the rollout store's files and the router's routing file were read
in the locale's encoding. Under ``LC_ALL=C`` without UTF-8 mode or locale coercion (a minimal
image, a cron job) a run record holding non-ASCII text (an alert's reason, Kubeflow's error
text) raised UnicodeDecodeError, which the run listing takes for a record being replaced and
skips: the run vanished from the trigger's state, ``marquee incidents`` and the start-up
recovery. Here the records are written in this process and read by a process in that locale.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from datetime import datetime, timezone
from pathlib import Path

from monitoring.retrain.models import Decision, RunRecord
from monitoring.retrain.state import StateStore

REASON = "ModelDataDrift on genre_share_Sci-Fi → retrain (Amélie’s users)"

READER = textwrap.dedent("""
    import locale, sys
    from monitoring.retrain.state import StateStore

    store = StateStore(sys.argv[1])
    print(locale.getpreferredencoding(False))
    print(len(store.runs()), len(store.decisions()))
    print(store.runs()[0].reason.encode("unicode_escape").decode("ascii"))
""")


def test_runs_and_decisions_with_non_ascii_text_are_read_in_an_ascii_locale(tmp_path: Path
                                                                            ) -> None:
    store = StateStore(tmp_path / "retrain")
    now = datetime(2026, 11, 25, tzinfo=timezone.utc)
    store.save_run(RunRecord(run_id="r1", model="movie-recommender", reason=REASON,
                             source="manual", requested_at=now))
    store.append_decisions([Decision(time=now, decision="started", source="manual",
                                     run_id="r1", detail=REASON)])

    env = {k: v for k, v in os.environ.items() if not k.startswith(("LC_", "LANG", "PYTHON"))}
    env.update(LC_ALL="C", PYTHONUTF8="0", PYTHONCOERCECLOCALE="0", PYTHONIOENCODING="ascii")
    out = subprocess.run([sys.executable, "-c", READER, str(tmp_path / "retrain")], env=env,
                         capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0, out.stderr
    encoding, counts, reason = out.stdout.split("\n")[:3]
    assert encoding == "ANSI_X3.4-1968"  # the reader's locale really was ASCII
    assert counts == "1 1", out.stderr  # before: "0 …", the run skipped as unreadable
    assert reason.encode("ascii").decode("unicode_escape") == REASON


def test_a_lock_file_gets_the_umask_mode_so_a_group_can_share_the_store(tmp_path: Path) -> None:
    """A lock file was made 0644 whatever the umask: under a group-shared umask (002) a
    writer of another uid in the group could not open ``.marquee-store/lock`` for writing."""
    from marquee.filelock import flock

    old = os.umask(0o002)
    try:
        with flock(tmp_path / "lock"):
            pass
    finally:
        os.umask(old)
    assert (tmp_path / "lock").stat().st_mode & 0o777 == 0o664


def test_a_decision_line_cut_inside_a_character_is_skipped_not_fatal(tmp_path: Path) -> None:
    """A crash mid-append can cut the log's last line inside a multi-byte character: reading
    the log raised UnicodeDecodeError (``marquee incidents`` and ``/runs`` failed, and so did
    the trigger's start-up recovery) instead of skipping that line as a cut line is skipped."""
    store = StateStore(tmp_path / "retrain")
    now = datetime(2026, 11, 25, tzinfo=timezone.utc)
    store.append_decisions([Decision(time=now, decision="started", source="manual",
                                     run_id="r1", detail="first")])
    torn = Decision(time=now, decision="started", source="manual", run_id="r2",
                    detail=REASON).model_dump_json().encode()
    cut = torn.index("→".encode()) + 1  # inside the arrow's three bytes
    with store.decisions_path.open("ab") as fh:
        fh.write(torn[:cut])
    assert [d.run_id for d in store.decisions()] == ["r1"]

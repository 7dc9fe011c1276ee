"""Text the platform writes is UTF-8 whatever the locale.

Under ``LC_ALL=C`` with neither UTF-8 mode nor locale coercion (``PYTHONUTF8=0
PYTHONCOERCECLOCALE=0``: a minimal container image, a cron job) the locale's encoding is ASCII:
``write_text_atomic`` and ``finalize_bundle`` wrote in it, so a state file or a bundle whose
training config held a film title ("Amélie") failed with ``UnicodeEncodeError``, and in a
latin-1 locale they wrote bytes a UTF-8 reader (``read_manifest`` reads JSON bytes) rejects.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from marquee.bundle import read_manifest, verify_bundle

TITLE = "Amélie (Le Fabuleux Destin d’Amélie Poulain) → 5★"

WRITER = textwrap.dedent("""
    import locale, sys
    from pathlib import Path
    from marquee.bundle import finalize_bundle
    from marquee.durable import write_text_atomic, write_text_exclusive

    out, title = Path(sys.argv[1]), sys.argv[2].encode("ascii").decode("unicode_escape")
    print(locale.getpreferredencoding(False))
    write_text_atomic(out / "state.json", title)
    write_text_exclusive(out / "spec.yaml", title)
    (out / "bundle").mkdir()
    (out / "bundle" / "items.csv").write_bytes(b"1,x\\n")
    finalize_bundle(out / "bundle", "movie-recommender", "v1", {"title": title}, "f" * 64,
                    {"ndcg_at_10": 0.25}, code_revision="abc123")
""")


def test_text_written_in_an_ascii_locale_is_utf8_and_reads_back(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LC_", "LANG", "PYTHON"))}
    env.update(LC_ALL="C", PYTHONUTF8="0", PYTHONCOERCECLOCALE="0", PYTHONIOENCODING="ascii")
    escaped = TITLE.encode("unicode_escape").decode("ascii")  # argv itself must be ASCII here
    out = subprocess.run([sys.executable, "-c", WRITER, str(tmp_path), escaped], env=env,
                         capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[2])

    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ANSI_X3.4-1968"  # the writer's locale really was ASCII
    assert (tmp_path / "state.json").read_bytes() == TITLE.encode("utf-8")
    assert (tmp_path / "spec.yaml").read_bytes() == TITLE.encode("utf-8")
    manifest = verify_bundle(tmp_path / "bundle")
    assert manifest.training_config == {"title": TITLE}
    assert read_manifest(tmp_path / "bundle") == manifest
    raw = json.loads((tmp_path / "bundle" / "bundle.json").read_bytes().decode("utf-8"))
    assert raw["training_config"]["title"] == TITLE

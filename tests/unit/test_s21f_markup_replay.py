"""`marquee replay` prints the variant names the server at --router answers with as text,
not rich markup: before, a variant "[/x]" ended the replay's table in a rich MarkupError
traceback (exit 1, after every request had been sent) and one holding "[bold]" lost it.
The server here is a stand-in on 127.0.0.1 (some other service at the --router URL, or a
router with variants named by hand), answering /recommend and /feedback."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from serving.replay.cli import app


@contextmanager
def stand_in_router(variants: list[str]) -> Iterator[str]:
    turn = iter(range(10**6))

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("content-length", 0)))
            if self.path == "/recommend":
                i = next(turn)
                status, body = 200, {"items": [8, 9], "scores": [1.0, 0.5],
                                     "request_id": f"r{i}", "model_version": "1",
                                     "variant": variants[i % len(variants)]}
            else:
                status, body = 202, {"credited": None}
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_variant_names_with_brackets_are_printed_as_given(tmp_path: Path) -> None:
    holdout = tmp_path / "holdout.parquet"
    pd.DataFrame({"user_id": [1, 1, 2, 3], "item_id": [8, 9, 15, 22],
                  "timestamp": [1, 2, 3, 4]}).to_parquet(holdout)
    with stand_in_router(["[bold]", "canary[/x]"]) as url:
        result = CliRunner().invoke(app, ["replay", "--holdout", str(holdout), "--router", url,
                                          "--rate", "200", "--requests", "4",
                                          "--concurrency", "1"], env={"COLUMNS": "200"})
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        repr(result.exception)
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): line for line in result.output.splitlines()
            if line.count("│") > 2}
    assert "[bold]" in rows and "canary[/x]" in rows, result.output

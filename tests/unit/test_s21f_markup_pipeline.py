"""`marquee pipeline compile` prints the path and image it was given as text, not rich markup:
before, an --output under a directory "[bold]" lost that part of its name in the line that
says where the YAML went, and one under "[/x]" ended in a rich MarkupError traceback (exit 1)
after the file had been written."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from pipelines.cli import app


def test_compile_names_an_output_path_with_brackets_whole(tmp_path: Path) -> None:
    for part in ("[bold]", "[/x]"):
        # longer than a pipe's 80 columns: the line is not wrapped inside the path either
        out = tmp_path / ("pipelines-" * 9) / f"run {part}" / "p.yaml"
        out.parent.mkdir(parents=True, exist_ok=True)
        result = CliRunner().invoke(app, ["compile", "-o", str(out), "--image",
                                          "registry.local/marquee:[dev]"],
                                    env={"COLUMNS": "80"})  # a pipe's width
        assert result.exception is None, repr(result.exception)
        assert result.exit_code == 0, result.output
        assert "registry.local/marquee:[dev]" in out.read_text()
        assert result.output.strip() == (f"compiled {out} (image registry.local/marquee:[dev])")

"""docker/Dockerfile: lint-clean, multi-stage, non-root, pinned; the chart uses its targets."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import chartlib as c

DOCKERFILE = c.REPO / "docker" / "Dockerfile"
TARGETS = {"pipeline", "server", "router", "mlflow"}


def hadolint() -> str:
    exe = Path(sys.executable).parent / "hadolint"
    return str(exe) if exe.exists() else (shutil.which("hadolint") or "hadolint")


def test_dockerfile_is_hadolint_clean() -> None:
    proc = subprocess.run([hadolint(), "--failure-threshold", "info", str(DOCKERFILE)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and not proc.stdout.strip(), proc.stdout + proc.stderr


def test_hadolint_is_not_vacuous(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install flask\n")
    proc = subprocess.run([hadolint(), str(bad)], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "DL3007" in proc.stdout


def stages() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    current = None
    for line in DOCKERFILE.read_text().splitlines():
        if m := re.match(r"FROM\s+(\S+)(?:\s+AS\s+(\S+))?", line, flags=re.I):
            current = m.group(2) or m.group(1)
            out[current] = [line]
        elif current:
            out[current].append(line)
    return out


def test_targets_are_multi_stage_non_root_and_pinned() -> None:
    text = DOCKERFILE.read_text()
    (base,) = re.findall(r"^ARG PYTHON_IMAGE=(\S+)$", text, flags=re.M)
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", base), base
    st = stages()
    assert TARGETS <= set(st)
    for target in TARGETS:
        body = "\n".join(st[target])
        chain = body
        parent = re.match(r"FROM\s+(\S+)", st[target][0]).group(1)  # type: ignore[union-attr]
        while parent in st:  # USER may come from the stage it builds on
            chain += "\n".join(st[parent])
            parent = re.match(r"FROM\s+(\S+)", st[parent][0]).group(1)  # type: ignore[union-attr]
        assert re.search(r"^USER 10001:10001$", chain, flags=re.M), target
        assert "COPY --from=build" in body, f"{target} is not built in a separate stage"


def test_chart_images_are_the_dockerfile_targets() -> None:
    image = c.chart_defaults()["image"]
    repos = {k.removesuffix("Repository"): v for k, v in image.items() if k.endswith("Repository")}
    assert set(repos) == TARGETS
    assert all(v.endswith(f"marquee-{k}") for k, v in repos.items())
    assert (c.CHART / "values.yaml").read_text().count("--target") == 0
    header = DOCKERFILE.read_text()
    for target in TARGETS:
        assert f"--target {target}" in header

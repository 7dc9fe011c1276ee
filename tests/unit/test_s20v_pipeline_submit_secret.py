"""``marquee pipeline run --no-local`` names the Kubeflow host it submitted to without the
host's password (before: ``submitted run … to https://ops:<password>@kubeflow…``). The
Kubeflow client is a recording stand-in: no Kubeflow host is reachable from this machine."""

from __future__ import annotations

from typer.testing import CliRunner

from pipelines.cli import app

SECRET = "S3CRET-v20p"


def test_a_submitted_run_names_its_kubeflow_host_without_the_password(tmp_path,
                                                                      monkeypatch) -> None:
    import kfp

    class RecordingClient:
        def __init__(self, host):  # noqa: ANN001
            self.host = host

        def create_run_from_pipeline_func(self, pipeline_func, arguments, run_name,  # noqa: ANN001, ANN201
                                          experiment_name):
            return type("Run", (), {"run_id": "run-1"})()

    monkeypatch.setattr(kfp, "Client", RecordingClient)
    for var in ("MARQUEE_STORE_URI", "MARQUEE_REGISTRY_URI", "MARQUEE_S3_ENDPOINT_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MARQUEE_HOME", str(tmp_path))
    monkeypatch.setenv("MARQUEE_KUBEFLOW_HOST", f"https://ops:{SECRET}@kubeflow.example")
    result = CliRunner().invoke(app, ["run", "--no-local"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "submitted run run-1 to https://ops:***@kubeflow.example" in result.output
    assert SECRET not in result.output

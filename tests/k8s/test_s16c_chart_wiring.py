"""The chart's objects point at each other and at what the code reads, with non-default values
(offline renders): the router calls the KServe model name the model servers serve, the retrain
trigger's InferenceServices find the ServiceAccount and ConfigMap they name, and each image is
pinned by its own digest."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

import chartlib as c

DIGESTS = {"pipeline": "sha256:" + "1" * 64, "server": "sha256:" + "2" * 64,
           "router": "sha256:" + "3" * 64, "mlflow": "sha256:" + "4" * 64}


def _named(objs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (obj,) = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    return obj


def _env(obj: dict[str, Any]) -> dict[str, Any]:
    (pod,) = c.pod_specs(obj)
    (ctr,) = pod["containers"]
    return {e["name"]: e.get("value") for e in ctr.get("env", [])}


@pytest.mark.parametrize(("values", "served", "called"), [
    ({}, "movie-recommender", "movie-recommender"),
    ({"settings": {"modelName": "my-recs"}}, "my-recs", "my-recs"),
    # model servers that are not Marquee's: the router's own name wins
    ({"settings": {"modelName": "my-recs"}, "router": {"modelName": "external"}},
     "my-recs", "external"),
])
def test_the_router_calls_the_model_name_the_model_servers_serve(
        values: dict[str, Any], served: str, called: str) -> None:
    """Marquee's model server registers its KServe model under MARQUEE_MODEL_NAME
    (serving/kserve/__init__.py: RecommenderModel(settings.model_name, ...)); the router
    calls /v1/models/<MARQUEE_ROUTER_MODEL_NAME>:predict. With settings.modelName changed
    and router.modelName left alone, every /recommend reached a model the servers do not hold
    (404), so the product API answered nothing but fallbacks and errors."""
    from marquee.settings import Settings
    from serving.router.settings import RouterSettings

    objs = c.objects(values)
    data = _named(objs, "ConfigMap", "marquee-settings")["data"]
    settings = Settings.model_validate({k.removeprefix("MARQUEE_").lower(): v
                                        for k, v in data.items() if k.startswith("MARQUEE_")})
    env = _env(_named(objs, "Deployment", "marquee-router"))
    router = RouterSettings.model_validate({k.removeprefix("MARQUEE_ROUTER_").lower(): v
                                            for k, v in env.items()
                                            if k.startswith("MARQUEE_ROUTER_")})
    assert settings.model_name == served
    assert router.model_name == called
    assert list(env).count("MARQUEE_ROUTER_MODEL_NAME") == 1


@pytest.mark.parametrize("values", [
    {"models": {"enabled": False}},
    {"models": {"enabled": False}, "image": {"pullSecrets": ["regcred"]}},
    {"models": {"enabled": False}, "sink": {"enabled": False}, "networkPolicy": {"enabled": False}},
], ids=["no-models", "no-models-pull-secrets", "no-models-minimal"])
def test_retrained_versions_find_what_their_pods_name_without_chart_versions(
        values: dict[str, Any]) -> None:
    """With models.enabled=false (no static versions: a first install before any model is
    registered) the retrain trigger still creates each retrained version's InferenceService
    from its template; that pod names the ServiceAccount <release>-model and envFrom the
    ConfigMap <release>-model-server, which were only rendered with models.enabled: the pod
    could not be created (no ServiceAccount) or start (CreateContainerConfigError), so no
    retrained version ever became Ready and no shadow rollout started."""
    objs = c.objects(values)
    template = _named(objs, "ConfigMap", "marquee-trigger-isvc")["data"]["inferenceservice.yaml"]
    predictor = yaml.safe_load(template)["spec"]["predictor"]
    accounts = {o["metadata"]["name"] for o in objs if o["kind"] == "ServiceAccount"}
    configmaps = {o["metadata"]["name"] for o in objs if o["kind"] == "ConfigMap"}
    assert predictor["serviceAccountName"] in accounts
    for ctr in predictor["containers"]:
        for ref in ctr.get("envFrom", []):
            assert ref["configMapRef"]["name"] in configmaps, ref


def test_no_model_server_objects_when_no_model_server_can_run() -> None:
    """No static versions and no retrained ones (autoRollout none): nothing of the model
    servers is rendered, as before."""
    objs = c.objects({"models": {"enabled": False}, "retrainTrigger": {"autoRollout": "none"}})
    names = {(o["kind"], o["metadata"]["name"]) for o in objs}
    assert not names & {("ServiceAccount", "marquee-model"), ("ConfigMap", "marquee-model-server"),
                        ("ConfigMap", "marquee-trigger-isvc")}


def _repository_of(image: str) -> str:
    return image.split("@")[0].split(":")[0].rsplit("/", 1)[1].removeprefix("marquee-")


def test_each_image_is_pinned_by_its_own_digest() -> None:
    """The four Dockerfile targets are four images with four digests. The single
    image.digest put one digest after every repository, so with the documented
    `--set image.digest=sha256:…` three of the four images could not be pulled."""
    values = {"image": {f"{k}Digest": v for k, v in DIGESTS.items()},
              "sink": {"enabled": True}}
    objs = c.objects(values)
    seen: set[str] = set()
    for o in objs:
        for pod in c.pod_specs(o):
            for ctr in c.containers(pod):
                repo = _repository_of(ctr["image"])
                assert ctr["image"].endswith("@" + DIGESTS[repo]), (o["metadata"]["name"], ctr)
                seen.add(repo)
    assert seen == set(DIGESTS)
    data = _named(objs, "ConfigMap", "marquee-settings")["data"]
    assert data["MARQUEE_PIPELINE_IMAGE"].endswith("marquee-pipeline@" + DIGESTS["pipeline"])
    template = _named(objs, "ConfigMap", "marquee-trigger-isvc")["data"]["inferenceservice.yaml"]
    (ctr,) = yaml.safe_load(template)["spec"]["predictor"]["containers"]
    assert ctr["image"].endswith("marquee-server@" + DIGESTS["server"])


def test_one_image_pinned_the_others_keep_their_tag() -> None:
    objs = c.objects({"image": {"routerDigest": DIGESTS["router"], "tag": "1.2.3"}})
    images = {o["metadata"]["name"]: ctr["image"] for o in objs for pod in c.pod_specs(o)
              for ctr in pod["containers"]}
    assert images["marquee-router"] == f"ghcr.io/marquee-mlops/marquee-router@{DIGESTS['router']}"
    assert images["marquee-controller"] == "ghcr.io/marquee-mlops/marquee-server:1.2.3"


def test_the_schema_refuses_one_digest_for_every_image() -> None:
    import helm_python

    with pytest.raises(helm_python.HelmValuesError, match="digest"):
        c.render({"image": {"digest": DIGESTS["server"]}})

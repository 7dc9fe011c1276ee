"""Model serving: one model version per server, KServe or BentoML, on one shared runtime.

* ``serving.runtime`` — load a bundle (registry alias, version or URI; every checksum
  checked), build the FAISS index, ``Runtime.recommend``; the request handler both servers use.
* ``serving.kserve`` — ``kserve.Model`` + ``ModelServer`` bound to the configured host (V1, V2).
* ``serving.bento`` — the BentoML service (``serving/bentofile.yaml`` builds a Bento).
* ``serving.payload`` — batched Parquet payload logs and the KServe CloudEvents sink.
* ``serving.metrics`` / ``serving.errors`` / ``serving.settings`` — one of each per service.
* ``serving.router``, ``serving.rollout``, ``serving.replay`` — traffic in front of servers.

Nothing is imported here: ``import serving.router`` must not pull in KServe or torch.
"""

__all__: list[str] = []

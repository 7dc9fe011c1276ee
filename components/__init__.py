"""Kubeflow Pipelines components: typed artifacts, each a thin call into recsys/marquee.

Each module holds one plain function with typed ``Input[...]``/``Output[...]`` parameters,
its imports inside the body (the body is what runs in the pipeline container), and is made a
KFP component by :func:`components.factory.build_components` for a given base image.
"""

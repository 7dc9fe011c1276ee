"""The skew check: served features against the pipeline's feature code, request by request."""

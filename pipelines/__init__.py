"""Pipeline DAGs (wiring only), their compilation and their launchers."""

"""recbole-lda's YAML defaults, shipped inside the package as `recbole_lda.properties`
(pyproject.toml maps this folder there); found with importlib.resources, never by a path
relative to the checkout. overall.yaml, model/<MODEL>.yaml, dataset/<DATASET>.yaml,
tune/<MODEL>.yaml (search spaces), tune/harness.yaml (the tuning budget: epochs and ASHA
rungs per dataset), protocol/<NAME>.yaml (published evaluation protocols)."""

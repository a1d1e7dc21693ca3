"""The Ray-free core: plain PyTorch. Nothing under here imports `ray` (tests/test_layers.py checks it)."""

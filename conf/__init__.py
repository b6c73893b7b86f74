"""Hydra configs, installed as the package ``lovaszseg.conf`` (see pyproject.toml)."""

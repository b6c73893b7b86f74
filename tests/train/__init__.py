"""Tests of the training framework (module, losses, configs, entry points, DDP)."""

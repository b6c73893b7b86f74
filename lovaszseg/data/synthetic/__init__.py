"""Synthetic stand-ins for the real datasets, written in their layouts and cached in the data root."""

"""Post-hoc comparison of training runs, apart from training: the pieces behind ``report``."""

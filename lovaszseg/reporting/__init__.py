"""Post-hoc comparison of training runs: the pieces behind ``python -m lovaszseg.report``.

Kept apart from training so that a report can be rebuilt from any sweep directory, on any
machine, long after the runs finished — and so each step (finding runs, grouping them, the
statistics, the figure, the tables) can be tested on its own.
"""

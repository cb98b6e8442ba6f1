"""Each notebook's races, drivers and experiments, one module per slug.

``notebooks/NN-slug.ipynb`` shows the pattern (``redistutor/patterns/slug.py``) and calls one-line
helpers from ``redistutor/scenarios/slug.py`` for everything that is orchestration: race set-ups
driven by pause points, worker processes for ``lab.Workers``, traffic drivers, trials and the
assembly of their charts. Keeping them here leaves each notebook cell short and each pattern
module holding only the pattern. Scenario helpers return plain data (dicts, event logs) that the
notebook shows with the toolkit's views and checks with its assertions.
"""

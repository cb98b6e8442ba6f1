"""Exercise definitions, one module per notebook slug (``exercises/cache_aside.py`` ...).

Each module exposes factories that bind an :class:`~redistutor.check.Exercise` to the notebook's
client and database, plus the reference solutions that ``tests/exercises`` self-test.
"""

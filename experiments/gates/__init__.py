"""Holding a run to a reference: goldens, ``compare``, and the reproduction verdict."""

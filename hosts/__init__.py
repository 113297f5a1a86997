"""Thin hosts over the scoring core: each converts its transport to ``scoring.service`` calls."""

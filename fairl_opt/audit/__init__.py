"""Audit a fitted reward on a pairs file: per-pair margins, failures, what it pays for, figures."""

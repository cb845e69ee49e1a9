"""Tests of the documentation: its examples run, its set-up works."""

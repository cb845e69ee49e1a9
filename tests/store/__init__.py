"""Tests of pokan.store."""

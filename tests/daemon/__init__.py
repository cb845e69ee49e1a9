"""Tests of pokan.daemon."""

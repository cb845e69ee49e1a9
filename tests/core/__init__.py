"""Tests of pokan.core."""

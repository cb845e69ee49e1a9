"""Tests of pokan.wire."""

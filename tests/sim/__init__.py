"""Tests of pokan.sim."""

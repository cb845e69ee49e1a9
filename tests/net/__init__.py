"""Tests of pokan.net."""

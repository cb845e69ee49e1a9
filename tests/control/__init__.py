"""Tests of pokan.control."""

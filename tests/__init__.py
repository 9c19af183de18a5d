"""Tests for the zevvy integration."""

"""Tracked runs and the model registry."""

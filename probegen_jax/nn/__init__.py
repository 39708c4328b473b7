"""Layers shared by method families."""

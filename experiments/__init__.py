"""Experiments: configs and entry points of implicit_fields."""

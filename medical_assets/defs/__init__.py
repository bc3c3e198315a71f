"""Dagster wiring only: assets, resources, checks; the logic lives in the packages beside this one."""

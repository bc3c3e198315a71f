"""Realistic, deterministic demo data that resembles no real person."""

"""Privacy: keys, pseudonyms, Safe Harbor generalisation, the audit log and the leak check.

Plain Python (no Dagster, no Ray), so every rule here can be tested alone.
"""

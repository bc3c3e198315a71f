"""Analytics: aggregates of the de-identified and parsed tables, small-cell suppression, message
validation and dashboards. Plain Python (no Dagster, no Ray)."""

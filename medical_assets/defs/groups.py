"""Asset groups (one per zone) and the concurrency pool of Ray-heavy steps."""

LANDING = "landing"
PHI = "phi"
DEID = "deid"

RAY_POOL = "ray"
ANALYTICS = "analytics"  # deid zone too: aggregates and dashboards

"""Asset groups (the graph's boxes, one per stage), their owner, and the concurrency pool of Ray-heavy steps."""

LANDING = "landing"  # the files as they arrive, and their manifests
PHI = "phi"  # parsed tables, identified
DEID = "deid"  # record-level de-identified tables and DICOM files
ANALYTICS = "analytics"  # aggregates of the de-identified zone, small cells suppressed
REPORTS = "reports"  # dashboards and figures drawn from the analytics

# Who answers for the assets; shown on every asset's page.
OWNERS = ["team:medical-assets"]

RAY_POOL = "ray"

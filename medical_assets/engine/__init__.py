"""Ray: the runtime, datasources and sinks; the only package that imports ray.

Ray reads some settings once, when it is first imported, so they are put into the
environment here, before any module of this package imports ray.
"""

import os
import sys
import warnings

# No usage statistics leave a hospital's network; no progress bars in Dagster's run log.
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
if not os.environ.get("RAY_ADDRESS"):
    if "ray" in sys.modules and "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER" not in os.environ:
        warnings.warn(
            "ray was imported before medical_assets.engine, so a local Ray started by this process may "
            "bind every network interface; import medical_assets first, or set "
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 before starting Python",
            RuntimeWarning,
            stacklevel=2,
        )
    # A local Ray 2.60 binds every interface unless told it is not a cluster; this
    # makes every Ray socket listen on 127.0.0.1 (see README, "Security").
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

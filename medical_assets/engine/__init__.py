"""Ray: the runtime, datasources and sinks; the only package that imports ray.

Ray reads some settings once, when it is first imported, so they are put into the
environment here, before any module of this package imports ray.
"""

import os
import secrets

# No usage statistics leave a hospital's network; no progress bars in Dagster's run log.
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
if not os.environ.get("RAY_ADDRESS"):
    # A local Ray 2.60 binds every interface unless told it is not a cluster; this
    # makes every Ray socket listen on 127.0.0.1 (see README, "Security").
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    # Token authentication with a token that lives only in this process tree's
    # environment: nothing is written to ~/.ray. Ray caches the mode at import.
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))

"""The one Definitions object of the project: everything under `medical_assets/defs/`.

Assets, checks, jobs, schedules, sensors and resources are found where they are defined (the
Dagster `defs` folder convention), so a module added there, by hand or by
`dg scaffold defs dagster.asset <name>.py`, is loaded with nothing listed here.
"""

import atexit
import gc
from pathlib import Path

import dagster as dg

defs = dg.load_from_defs_folder(path_within_project=Path(__file__).parent)

# Dagster, Ray, pyarrow and pandas leave about 230,000 objects behind at import, alive as long as the
# process. Python's cyclic collector walks them all at every full collection of a run (0.2 s each)
# and once more as the interpreter exits: frozen, they are left out, and at exit so is what the run
# made (its tables are written and closed by then). 0.5 to 1.5 s of a night's CLI run.
gc.freeze()
atexit.register(gc.freeze)

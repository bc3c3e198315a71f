"""The one Definitions object of the project: everything under `medical_assets/defs/`.

Assets, checks, jobs, schedules, sensors and resources are found where they are defined (the
Dagster `defs` folder convention), so a module added there, by hand or by
`dg scaffold defs dagster.asset <name>.py`, is loaded with nothing listed here.
"""

from pathlib import Path

import dagster as dg

defs = dg.load_from_defs_folder(path_within_project=Path(__file__).parent)

"""Inputs of the de-identification, validation and analytics measurements, prepared once per corpus.

    python -m benchmarks.inputs CORPUS FOLDER    (prints JSON: rows and the time of each stage)

The corpus is parsed with our reader in one process (`parse_hl7_file`, all five PHI tables),
de-identified with `deidentify_hl7_tables` under a random key, and scored with `with_validation`,
as each de-identification task of the pipeline does. The tables go to FOLDER/phi/ and
FOLDER/deid/ as Parquet, the key (random, for synthetic data only) to FOLDER/key.txt, owner-only,
so that the analytics measurement tokenises source files as the de-identified tables did. None
of this is timed as part of a measurement: each measurement loads these files and times its own
step alone.
"""

import glob
import json
import os
import shutil
import sys
import time

import pyarrow as pa
import pyarrow.parquet as pq

from medical_assets.analytics.validation import with_validation
from medical_assets.hl7 import parse_hl7_file
from medical_assets.privacy.hl7_deid import deidentify_hl7_tables
from medical_assets.privacy.keys import parse_key_ring
from medical_assets.privacy.pseudonyms import Pseudonymizer

COMPLETE = "_complete.json"


def prepare(corpus: str, folder: str) -> dict:
    """Write the prepared tables under `folder` (replacing what was there); rows and stage times."""
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(os.path.join(folder, "phi"))
    os.makedirs(os.path.join(folder, "deid"))
    timings = {}

    started = time.perf_counter()
    parsed = []
    for path in sorted(glob.glob(os.path.join(corpus, "*.hl7"))):
        with open(path, "rb") as f:
            parsed.append(parse_hl7_file(f.read(), path).tables())
    phi = {name: pa.concat_tables([p[name] for p in parsed]) for name in parsed[0]}
    del parsed
    timings["parse_s"] = time.perf_counter() - started

    secret = os.urandom(32).hex()
    key_path = os.path.join(folder, "key.txt")
    with open(os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        f.write(secret)
    started = time.perf_counter()
    deid = deidentify_hl7_tables(phi, Pseudonymizer(parse_key_ring(secret).current))
    timings["deidentify_s"] = time.perf_counter() - started
    started = time.perf_counter()
    deid["hl7_messages"] = with_validation(deid["hl7_messages"], phi)
    timings["score_s"] = time.perf_counter() - started

    for zone, tables in (("phi", phi), ("deid", deid)):
        for name, table in tables.items():
            pq.write_table(table, os.path.join(folder, zone, f"{name}.parquet"))
    result = {
        "messages": phi["hl7_messages"].num_rows,
        "phi_rows": {name: t.num_rows for name, t in phi.items()},
        "deid_rows": {name: t.num_rows for name, t in deid.items()},
        **timings,
    }
    with open(os.path.join(folder, COMPLETE), "w") as f:
        json.dump(result, f)
    return result


if __name__ == "__main__":
    print(json.dumps(prepare(*sys.argv[1:3])))

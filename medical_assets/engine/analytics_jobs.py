"""Ray jobs of the analytics and reports: each reads its inputs inside a worker, computes there,
and writes there; the driver only sees row counts, file names and object references. A night's
few new part groups, the fold of their summaries into the kept combination and the reports of
small tables are computed in the run's process instead (`tasks.runs_here`): the same functions.

The analytics are a map and a reduce (`analytics.summaries`): a task per bucket of part groups
reads the de-identified and PHI parts of the same name and makes their small partial aggregates;
one task combines them, suppresses small cells and writes the tables. No process holds every row.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import NamedTuple

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import ray

from medical_assets.analytics.aggregates import DEID_COLUMNS_READ, combine_all, publish_combined, summarize_group
from medical_assets.analytics.chart_data import DASHBOARD_FILE, REPORT_GROUPS
from medical_assets.analytics.summaries import SUMMARY_SCHEMAS, folded_sums, patient_counts, reduced
from medical_assets.analytics.tables import ANALYTICS_TABLES
from medical_assets.dicom.tables import DEID_DICOM_IMAGES
from medical_assets.engine import kept_combination, multitable
from medical_assets.engine.exports import ExportTablesDatasink
from medical_assets.engine.memory import WORKER_RELEASE_ABOVE, release_memory
from medical_assets.engine.part_groups import kept_file_name, part_digest, part_groups_by_name, prune_cache
from medical_assets.engine.runtime import ray_is_paid_for
from medical_assets.engine.tasks import (
    IN_PROCESS_PARQUET_BYTES,
    TASK_OPTIONS,
    map_in_workers,
    map_tables,
    runs_here,
    write_tables,
)
from medical_assets.privacy.hl7_deid import SOURCE_FILE_DOMAIN
from medical_assets.privacy.keys import PseudonymKey, derived_key_id
from medical_assets.privacy.pseudonyms import Pseudonymizer
from medical_assets.step_records import package_fingerprint
from medical_assets.storage import Location, read_table, restrict_to_owner, size_bytes, write_table_atomically


class Input(NamedTuple):
    """One table a job reads: its folder, the columns it needs (None: all), and how it is stored."""

    location: Location
    columns: list[str] | None = None
    file_format: str = "parquet"
    schema: pa.Schema | None = None  # needed for CSV and JSON Lines, which do not carry one


Inputs = Mapping[str, Input]
Compute = Callable[[dict[str, pa.Table | None]], Mapping[str, pa.Table]]
# The de-identified columns the analytics read, and the PHI columns they need where the
# de-identified zone cannot answer (a message's month, parse errors): the minimum necessary.
ANALYTICS_DEID_INPUTS = DEID_COLUMNS_READ
ANALYTICS_PHI_INPUTS = {
    "hl7_messages": ["source_file", "message_index", "message_datetime"],
    "hl7_errors": ["source_file"],
}


def publish_analytics(
    deid: Location,
    phi: Location,
    targets: Mapping[str, Location],
    file_format: str,
    stamp: Mapping[str, str],
    key: PseudonymKey,
    threshold: int,
    log: Callable[[str], None] = lambda line: None,
) -> dict[str, int]:
    """Every table of `ANALYTICS_TABLES`, staged under `targets`: part groups summarized in parallel
    tasks, then combined and suppressed in one, which writes them. The combination of the groups
    the last run combined is kept (`COMBINED_FOLDER`): when those groups are the first of today's,
    unchanged, only the later ones are summarized and folded into it."""
    groups = analytics_part_groups(deid, phi)
    cache = phi.child(*SUMMARIES_FOLDER)
    names = summary_file_names(groups, key)
    prune_cache(cache, set(names))
    combined = phi.child(*COMBINED_FOLDER)
    earlier = kept_combination.combined_groups(combined, names)
    log(
        f"analytics: {len(names) - earlier:,} part group(s) summarized and folded into the kept combination of {earlier:,}"
        if earlier else f"analytics: all {len(names):,} part group(s) combined (no kept combination of the first ones)"
    )
    later = groups[earlier:]
    # A night's few new groups are summarized here, and then combined here too unless the kept
    # combination is too large for this process (its latest row per patient: 72 MB at 2,000,000 patients).
    here = runs_here(sum(inputs_size_bytes(inputs) for _, inputs in later), IN_PROCESS_PARQUET_BYTES)
    summaries = summarize_part_groups(later, key, cache, names[earlier:], here=here)
    images = Input(deid.child("dicom_images"), ANALYTICS_DEID_INPUTS["dicom_images"])
    compute = functools.partial(
        _combined_analytics, summaries=summaries, threshold=threshold, combined=combined, groups=names, earlier=earlier
    )
    schemas = {name: ANALYTICS_TABLES[name] for name in targets}
    kept_bytes = inputs_size_bytes({"kept": Input(combined)}) if earlier else 0
    return export_computed_tables(
        {"deid/dicom_images": images}, compute, targets, schemas, file_format, stamp,
        here=here and runs_here(kept_bytes, COMBINE_IN_PROCESS_BYTES),
    )


PartInputs = tuple[str, dict[str, Input]]  # a part name, and the inputs of that name in both zones
_GROUPED_DEID_TABLES = ["hl7_messages", "hl7_lab_results", "hl7_pharmacy_orders"]
_SUMMARY_PACKED = kept_combination.SUMMARY_PACKED


def analytics_part_groups(deid: Location, phi: Location) -> list[PartInputs]:
    """The analytics inputs by part name: a de-identified part holds the same files as the PHI part of
    its name (see `part_groups.run_group_job`), so each group's messages find their months there."""
    zones = {
        "deid/": (part_groups_by_name(deid, _GROUPED_DEID_TABLES), ANALYTICS_DEID_INPUTS),
        "phi/": (part_groups_by_name(phi, list(ANALYTICS_PHI_INPUTS)), ANALYTICS_PHI_INPUTS),
    }
    names = sorted({name for groups, _ in zones.values() for name in groups})
    return [
        (
            name,
            {
                prefix + table: Input(part, columns[table])
                for prefix, (groups, columns) in zones.items()
                for table, part in groups.get(name, {}).items()
            },
        )
        for name in names
    ]


# phi/_census/summaries/<digest>.parquet: each part group's summary, kept so that a night summarizes
# only the groups it has not seen. PHI: the months and counts before suppression.
SUMMARIES_FOLDER = ("_census", "summaries")
# phi/_census/analytics/: the reduced combination of the groups the last run combined (`kept_combination`).
COMBINED_FOLDER = ("_census", "analytics")
# A kept combination that holds less is folded with a night's summaries in the run's process (at
# 5,000,000 patients its files hold 180 MB); a larger one, in a worker.
COMBINE_IN_PROCESS_BYTES = 256 << 20


def summary_file_names(groups: Sequence[PartInputs], key: PseudonymKey) -> list[str]:
    """The name each group's kept summary has: a digest of its input parts (by their Parquet
    footers), its part name, the key and our code."""
    salt = f"{derived_key_id(key.secret)}\x1f{package_fingerprint()}"
    return [
        kept_file_name(name, part_digest({table: table_input.location for table, table_input in inputs.items()}), salt, suffix=".parquet")
        for name, inputs in groups
    ]


def summarize_part_groups(
    groups: Sequence[PartInputs],
    key: PseudonymKey,
    cache: Location | None = None,
    names: Sequence[str] | None = None,
    here: bool = False,
) -> list[pa.Table | ray.ObjectRef]:
    """`summaries.summarize` of each group in the workers (or `here`, in this process): blocks of
    packed summaries (one row per group, `source_file` holding the part name), as references to
    the workers' blocks or as tables. With `cache` (and the groups' kept `names`,
    `summary_file_names`), a group whose kept summary is there is read back."""
    if not groups:
        return []
    names = names if names is not None else summary_file_names(groups, key) if cache is not None else [""] * len(groups)
    items = [{"group": number, "cache": name} for number, name in enumerate(names)]
    kwargs = {"groups": list(groups), "key": key, "cache": cache}
    # In the workers the driver goes on while they summarize: the combination fetches the blocks.
    summaries = map_tables(items, _summarized, kwargs, here=True) if here else map_in_workers(items, _summarized, kwargs).to_arrow_refs()
    if cache is not None:
        restrict_to_owner(cache)  # PHI: owner-only, as the rest of the zone
    return summaries


def inputs_size_bytes(inputs: Inputs) -> int:
    """The bytes of every file of `inputs` (a table's folder, or one part file)."""
    return size_bytes([table.location for table in inputs.values()])


def _combined_analytics(
    tables: dict[str, pa.Table | None],
    summaries: Sequence[pa.Table | ray.ObjectRef],
    threshold: int,
    combined: Location | None = None,
    groups: Sequence[str] = (),
    earlier: int = 0,
) -> dict[str, pa.Table]:
    """The analytics tables from `summaries` (of the groups after the first `earlier` ones, whose
    combination is kept in the folder `combined`); the combination of all `groups` is kept there."""
    blocks = [summary if isinstance(summary, pa.Table) else ray.get(summary) for summary in summaries]
    later = kept_combination.unpacked([block for block in blocks if block.num_rows])
    if earlier:
        kept = kept_combination.read_kept(combined)
        sums = folded_sums(kept.sums, later)
        new_rows, counts = kept_combination.fold_latest(combined, kept, later["latest_patients"])
        latest_files = kept.latest_files
    else:
        sums = reduced(later)
        new_rows, counts, latest_files = sums["latest_patients"], patient_counts(sums["latest_patients"]), []
    if combined is not None and earlier < len(groups):  # else it holds these very groups already
        kept_combination.write_kept(combined, sums, groups, counts, latest_files, new_rows)
    images = tables.get("deid/dicom_images")
    images = images if images is not None else DEID_DICOM_IMAGES.empty_table()
    summary = {**sums, "latest_patients": SUMMARY_SCHEMAS["latest_patients"].empty_table()}
    return publish_combined(combine_all(summary, images, one_row_per_patient=True, patient_counts=counts), threshold)


def _summarized(batch: pa.Table, groups: list[PartInputs], key: PseudonymKey, cache: Location | None) -> Iterable[pa.Table]:
    """The summaries of the groups numbered in `batch`, a block each."""
    source_file_token = functools.partial(Pseudonymizer(key).token, SOURCE_FILE_DOMAIN)
    for number, cache_name in zip(batch.column("group").to_pylist(), batch.column("cache").to_pylist()):
        kept = cache.child(cache_name) if cache is not None and cache_name else None
        if kept is not None and kept.exists():
            yield pq.read_table(kept.path, filesystem=kept.filesystem, schema=_SUMMARY_PACKED)
            continue
        name, inputs = groups[number]
        tables = {input_name: read_input(table) for input_name, table in inputs.items()}
        summary = summarize_group(_zone(tables, "deid/"), _zone(tables, "phi/"), None, source_file_token)
        del tables
        release_memory(WORKER_RELEASE_ABOVE)
        packed = multitable.pack(name, summary, _SUMMARY_PACKED)
        if kept is not None:
            write_table_atomically(packed, kept)
        yield packed


def build_reports(
    analytics: Location,
    analytics_format: str,
    deid: Location,
    target: Location,
    metadata: Mapping[str, str],
    threshold: int,
) -> list[str]:
    """The HTML dashboard and PNG figures, drawn side by side in workers (one task per group of
    REPORT_GROUPS) from the published analytics tables and the exported thumbnails, written under
    `target`; returns the file names."""
    inputs = {
        f"analytics/{name}": Input(analytics.child(name), None, analytics_format, schema)
        for name, schema in ANALYTICS_TABLES.items()
    }
    inputs |= {
        "deid/dicom_thumbnails": Input(deid.child("dicom_thumbnails")),
        "deid/dicom_images": Input(deid.child("dicom_images")),
    }
    builds = [
        functools.partial(_report_files, names=group, metadata=dict(metadata), threshold=threshold)
        for group in REPORT_GROUPS
    ]
    return build_files(inputs, builds, target)


def _report_files(
    tables: dict[str, pa.Table | None], names: Sequence[str], metadata: dict[str, str], threshold: int
) -> dict[str, bytes]:
    # Imported here: plotly and matplotlib take a second to load, and only these workers need them.
    from medical_assets.analytics.dashboard_html import build_dashboard_html
    from medical_assets.analytics.figures_png import build_png_figures

    analytics = _zone(tables, "analytics/")
    thumbnails, images = tables.get("deid/dicom_thumbnails"), tables.get("deid/dicom_images")
    files = {}
    if DASHBOARD_FILE in names:
        files[DASHBOARD_FILE] = build_dashboard_html(analytics, thumbnails, images, metadata).encode()
    figures = [name for name in names if name != DASHBOARD_FILE]
    if figures:
        files |= build_png_figures(analytics, thumbnails, images, suppression_threshold=threshold, only=figures)
    return files


def _zone(tables: Mapping[str, pa.Table | None], prefix: str) -> dict[str, pa.Table]:
    return {name.removeprefix(prefix): t for name, t in tables.items() if name.startswith(prefix) and t is not None}


def export_computed_tables(
    inputs: Inputs,
    compute: Compute,
    targets: Mapping[str, Location],
    schemas: Mapping[str, pa.Schema],
    file_format: str,
    stamp: Mapping[str, str],
    here: bool = False,
) -> dict[str, int]:
    """`compute(inputs)` in one worker (or `here`, in this process), its tables written by the
    export datasink; rows per table."""
    sink = ExportTablesDatasink(targets, schemas, file_format, stamp)
    computes, schema = [compute], multitable.packed_schema(schemas)
    if here:
        write_tables(computed_here(inputs, computes, schema), sink)
    else:
        computed_in_workers(inputs, computes, schema).write_datasink(sink, ray_remote_args=TASK_OPTIONS)
    return dict(sink.totals)


def build_files(
    inputs: Inputs,
    builds: Sequence[Callable[[dict[str, pa.Table | None]], Mapping[str, bytes]]],
    target: Location,
    here: bool | None = None,
) -> list[str]:
    """Each `build(inputs)` in a worker task of its own (or `here`, in this process, one after the
    other), which writes the files it returns (name -> bytes) under `target`; returns the names of
    all files written. By default here when the inputs are small and no job of the run started Ray:
    in a running Ray the builds go side by side (a second less than one after the other)."""
    schema = pa.schema([pa.field("name", pa.string()), pa.field("size_bytes", pa.int64())])

    def writing(build):
        def build_and_write(tables: dict[str, pa.Table | None]) -> pa.Table:
            files = build(tables)
            target.makedirs()
            for name, data in files.items():
                target.child(name).write_bytes_atomically(data)
            return pa.table({"name": list(files), "size_bytes": [len(d) for d in files.values()]}, schema=schema)

        return build_and_write

    computes = [writing(build) for build in builds]
    if here is None:
        here = not ray_is_paid_for() and runs_here(inputs_size_bytes(inputs))
    if here:
        written = pa.concat_tables(computed_here(inputs, computes, schema))
    else:
        written = pa.concat_tables(ray.get(computed_in_workers(inputs, computes, schema).to_arrow_refs()))
    return sorted(written["name"].to_pylist())


def computed_in_workers(inputs: Inputs, computes: Sequence[Callable], schema: pa.Schema) -> ray.data.Dataset:
    """Each function of `computes` in a worker task of its own, on the inputs read there: a table
    it returns as it is, tables by name packed in one row (`multitable`) with `schema`."""
    return map_in_workers(
        [{"compute": number} for number in range(len(computes))],
        _compute,
        {"inputs": dict(inputs), "computes": list(computes), "schema": schema},
        tasks=len(computes),
    )


def computed_here(inputs: Inputs, computes: Sequence[Callable], schema: pa.Schema) -> list[pa.Table]:
    """What `computed_in_workers` computes, in this process, one function after the other, on the
    inputs read once (the reports' four builds read the same eleven tables)."""
    tables = {name: read_input(table) for name, table in inputs.items()}
    return [_packed(compute(tables), schema) for compute in computes]


def _compute(
    batch: pa.Table, inputs: dict[str, Input], computes: list[Callable], schema: pa.Schema
) -> Iterable[pa.Table]:
    for number in batch.column("compute").to_pylist():
        yield _packed(computes[number]({name: read_input(table) for name, table in inputs.items()}), schema)


def _packed(result: pa.Table | Mapping[str, pa.Table], schema: pa.Schema) -> pa.Table:
    return result if isinstance(result, pa.Table) else multitable.pack("computed", result, schema)


def read_input(table: Input) -> pa.Table | None:
    """The table, or None when it was never published (a site without DICOM, say)."""
    location = table.location
    if location.filesystem.get_file_info(location.path).type == pafs.FileType.NotFound:
        return None
    if table.file_format == "parquet":
        return read_table(location, columns=table.columns)  # a Delta table's current files on an object store
    # CSV and JSON Lines exports: `_compliance.json` starts with "_", which datasets ignore.
    file_format = (
        ds.CsvFileFormat(convert_options=pacsv.ConvertOptions(column_types=table.schema, strings_can_be_null=True))
        if table.file_format == "csv"
        else ds.JsonFileFormat()
    )
    dataset = ds.dataset(location.path, schema=table.schema, format=file_format, filesystem=location.filesystem)
    return dataset.to_table(columns=table.columns)

"""The HL7 analytics in two steps, so that no process needs every row at once.

`summarize` turns one part group (the de-identified and PHI parts that hold the same files) into
small partial aggregates; `combine` turns the summaries of every group, concatenated in part
order, into the unsuppressed analytics tables. What each table means is documented in
`aggregates`; this module only splits the work:

- counts (utilization, message types, pharmacy, lab results, data quality) add up across groups;
- a test's quantiles need every value: a summary holds each distinct value with its count, so
  the quantiles of the combination are exact;
- a patient's latest message: each summary keeps the latest row per patient of its group, and
  the combination the latest of those; ties go to the later group, as they go to the later row;
- a file's facility: summaries count messages per file and facility, the combination picks.

A message's key is (source file token, message_index). A part group holds whole files, so every
child row and every PHI month of a message is in its group, joined there on integer keys.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from medical_assets.analytics import tables
from medical_assets.analytics.suppression import SUPPRESSED_CELLS
from medical_assets.privacy.safe_harbor import AGE_BANDS, AGE_OVER_89

SourceFileToken = Callable[[str], str]

MESSAGE_KEY = ["source_file_token", "message_index"]
ADMISSION = "ADT^A01"
DISCHARGE = "ADT^A03"
# OBX-8 for a result within its reference range; an empty flag says the same.
NORMAL_FLAG = "N"
QUANTILES = {"value_p05": 0.05, "value_p25": 0.25, "value_median": 0.5, "value_p75": 0.75, "value_p95": 0.95}
AGE_BAND_ORDER = [band for _, _, band in AGE_BANDS] + [AGE_OVER_89]

_UTILIZATION_KEYS = ["sending_facility", "month"]
_UTILIZATION_COUNTS = ["messages", "admissions", "discharges", "lab_results", "pharmacy_orders"]
_PATIENT_COLUMNS = ["patient_token", "message_year", "patient_gender", "age_band"]
_TYPE_KEYS = ["message_type", "hl7_version"]
_TEST_KEYS = ["observation_code", "observation_name", "units"]
ORDER_KEYS = ["give_code", "give_name", "route"]
_COUNT = pa.int64()

# The partial aggregates of one part group (and of their concatenation).
SUMMARY_SCHEMAS = {
    "utilization": pa.schema(
        [pa.field(k, pa.string()) for k in _UTILIZATION_KEYS] + [pa.field(c, _COUNT) for c in _UTILIZATION_COUNTS]
    ),
    "latest_patients": pa.schema(
        [
            pa.field("patient_token", pa.string()),
            pa.field("message_year", pa.int16()),
            pa.field("patient_gender", pa.string()),
            pa.field("age_band", pa.string()),
        ]
    ),
    "message_types": pa.schema([pa.field(k, pa.string()) for k in _TYPE_KEYS] + [pa.field("messages", _COUNT)]),
    "lab_values": pa.schema(
        [pa.field(k, pa.string()) for k in _TEST_KEYS]
        + [pa.field("numeric_value", pa.float64()), pa.field("results", _COUNT), pa.field("abnormal_results", _COUNT)]
    ),
    "pharmacy": pa.schema([pa.field(k, pa.string()) for k in ORDER_KEYS] + [pa.field("orders", _COUNT)]),
    "file_quality": pa.schema(
        [
            pa.field("source_file_token", pa.string()),
            pa.field("sending_facility", pa.string()),
            pa.field("messages", _COUNT),
            pa.field("score_sum", pa.float64()),
            pa.field("scored", _COUNT),
        ]
    ),
    "file_errors": pa.schema([pa.field("source_file_token", pa.string()), pa.field("errors", _COUNT)]),
}


def summarize(
    messages: pa.Table,
    observations: pa.Table,
    orders: pa.Table,
    phi_messages: pa.Table,
    errors: pa.Table,
    validation: pa.Table,
    source_file_token: SourceFileToken,
) -> dict[str, pa.Table]:
    """The partial aggregates (`SUMMARY_SCHEMAS`) of one part group: de-identified messages, OBX and
    RXE rows; PHI messages (for MSH-7's month) and parse errors; validation scores by message key."""
    keys = _MessageKeys(messages)
    months = _month_texts(phi_messages.column("message_datetime"))
    phi_keys = keys.of(_file_token_array(phi_messages.column("source_file"), source_file_token), phi_messages)
    month = months.take(keys.lookup(phi_keys))
    scores = _nan_as_null(validation.column("validation_score")).take(keys.lookup(keys.of_table(validation)))
    return {
        "utilization": _utilization(messages, month, observations, orders, keys),
        "latest_patients": latest_per_patient(messages.select(_PATIENT_COLUMNS)),
        "message_types": _summed(_with_ones(messages.select(_TYPE_KEYS), "messages"), _TYPE_KEYS, ["messages"]),
        "lab_values": _lab_values(observations),
        "pharmacy": order_counts(orders),
        "file_quality": _file_quality(messages, scores),
        "file_errors": _summed(
            _with_ones(pa.table({"source_file_token": _file_token_array(errors.column("source_file"), source_file_token)}), "errors"),
            ["source_file_token"],
            ["errors"],
        ),
    }


def combine(
    summary: Mapping[str, pa.Table], one_row_per_patient: bool = False, patient_counts: pa.Table | None = None
) -> dict[str, pa.Table]:
    """The HL7 analytics tables, unsuppressed, from the summaries of every group concatenated in part
    order, or from their reduction (`reduced`, `folded_sums`: say so with `one_row_per_patient`).
    `patient_counts`: the `patient_counts` of every patient's latest row, which then need not be
    in `summary` (a night's fold keeps them so, `refolded_counts`)."""
    quality = _summed(summary["file_quality"], ["source_file_token", "sending_facility"], ["messages", "score_sum", "scored"])
    file_errors = _summed(summary["file_errors"], ["source_file_token"], ["errors"])
    return {
        "hospital_utilization": _finished_utilization(summary["utilization"]),
        "patient_demographics": (
            patient_demographics(summary["latest_patients"], one_row_per_patient) if patient_counts is None
            else demographics_of_counts(patient_counts)
        ),
        "message_types": _finished_message_types(summary["message_types"]),
        "lab_results": _finished_lab_results(summary["lab_values"]),
        "pharmacy": _finished_pharmacy(summary["pharmacy"]),
        "data_quality_files": _data_quality_files(quality, file_errors),
        "data_quality_facilities": _data_quality_facilities(quality, file_errors),
    }


# How each summary reduces: its keys and the counts summed per key (latest_patients: a row per patient).
_SUMMED = {
    "utilization": (_UTILIZATION_KEYS, _UTILIZATION_COUNTS),
    "message_types": (_TYPE_KEYS, ["messages"]),
    "lab_values": ([*_TEST_KEYS, "numeric_value"], ["results", "abnormal_results"]),
    "pharmacy": (ORDER_KEYS, ["orders"]),
    "file_quality": (["source_file_token", "sending_facility"], ["messages", "score_sum", "scored"]),
    "file_errors": (["source_file_token"], ["errors"]),
}


def reduced(summary: Mapping[str, pa.Table]) -> dict[str, pa.Table]:
    """The summaries of several groups, concatenated in part order, reduced to what their combination
    needs: counts summed per key, each patient's latest row. `combine` of it (with
    `one_row_per_patient`) gives the tables that `combine` of the summaries gives; `folded` adds
    the summaries of later groups to it."""
    result = {name: _summed(summary[name], keys, counts) for name, (keys, counts) in _SUMMED.items()}
    return result | {"latest_patients": latest_per_patient(summary["latest_patients"])}


def folded_sums(earlier: Mapping[str, pa.Table], later: Mapping[str, pa.Table]) -> dict[str, pa.Table]:
    """The summed tables of `reduced` of the groups `earlier` reduced and of later groups (`later`,
    concatenated in part order); the latest rows are folded apart (`refreshed_latest`). Counts are
    added in the order a reduction of all the summaries adds them (the earlier total first), so the
    sums are the same to the last bit."""
    return {
        name: _summed(pa.concat_tables([earlier[name], later[name]]), keys, counts) for name, (keys, counts) in _SUMMED.items()
    }


def refreshed_latest(earlier: pa.Table, later: pa.Table) -> pa.Table:
    """The latest row of each patient of `later` (their rows of later groups, in part order), given
    `earlier`: the latest rows of those of them seen before (any others' are ignored). A patient of
    both keeps the later row when the years tie, as the later group's row wins in `reduced`. Only
    the night's patients are looked at: the history's latest rows stay as they are."""
    return latest_per_patient(pa.concat_tables([earlier, latest_per_patient(later)]))


def patient_counts(latest: pa.Table) -> pa.Table:
    """Patients by gender and age band among `latest_per_patient` rows (what patient_demographics counts)."""
    return _summed(_with_ones(latest.select(_DEMOGRAPHIC_KEYS), "patients"), _DEMOGRAPHIC_KEYS, ["patients"])


def refolded_counts(counts: pa.Table, replaced: pa.Table, refreshed: pa.Table) -> pa.Table:
    """`patient_counts` once the latest rows `replaced` gave way to `refreshed` (`refreshed_latest`):
    exact, as counts are whole numbers; a key whose count falls to 0 is left out, as a count of
    the rows themselves would leave it."""
    negated = patient_counts(replaced)
    negated = negated.set_column(2, "patients", pc.negate(negated.column("patients")))
    summed = _summed(pa.concat_tables([counts, negated, patient_counts(refreshed)]), _DEMOGRAPHIC_KEYS, ["patients"])
    return summed.filter(pc.not_equal(summed.column("patients"), 0))


def empty_summary() -> dict[str, pa.Table]:
    return {name: schema.empty_table() for name, schema in SUMMARY_SCHEMAS.items()}


def order_counts(orders: pa.Table) -> pa.Table:
    """RXE rows per (give code, give name, route)."""
    return _summed(_with_ones(orders.select(ORDER_KEYS), "orders"), ORDER_KEYS, ["orders"])


def latest_per_patient(rows: pa.Table) -> pa.Table:
    """Each patient token's row with the latest message_year (nulls earliest; ties: the last row);
    rows without a token left out. Applied to concatenated results, it gives the same answer."""
    rows = rows.filter(pc.is_valid(rows.column("patient_token")))
    if rows.num_rows == 0:
        return rows
    patients = pc.dictionary_encode(rows.column("patient_token").combine_chunks()).indices.to_numpy()
    years = pc.fill_null(rows.column("message_year").cast(pa.int32()), -1).to_numpy()
    order = np.lexsort((np.arange(rows.num_rows), years, patients))  # by patient, then year, then row
    ordered = patients[order]
    last = np.append(ordered[1:] != ordered[:-1], True)
    return rows.take(order[last])


def patient_demographics(latest: pa.Table, one_row_per_patient: bool = False) -> pa.Table:
    """Distinct patients by gender and age band, from `latest_per_patient` rows (of any grouping;
    `one_row_per_patient`: of all of them, already reduced)."""
    if not one_row_per_patient:
        latest = latest_per_patient(latest)
    return demographics_of_counts(patient_counts(latest))


def demographics_of_counts(counts: pa.Table) -> pa.Table:
    """The patient_demographics table of `patient_counts`."""
    grouped = _summed(counts, _DEMOGRAPHIC_KEYS, ["patients"]).to_pandas()
    band_order = grouped["age_band"].map({band: order for order, band in enumerate(AGE_BAND_ORDER)})
    grouped = grouped.assign(_band_order=band_order).sort_values(
        ["patient_gender", "_band_order", "age_band"], na_position="last"
    )
    return to_analytics_table(grouped, tables.PATIENT_DEMOGRAPHICS)


_DEMOGRAPHIC_KEYS = ["patient_gender", "age_band"]
PATIENT_COUNTS_SCHEMA = pa.schema(
    [pa.field("patient_gender", pa.string()), pa.field("age_band", pa.string()), pa.field("patients", pa.int64())]
)


def to_analytics_table(frame: pd.DataFrame, schema: pa.Schema, keep_suppressed_cells: bool = False) -> pa.Table:
    """`frame` as an analytics table: its columns in schema order, suppressed_cells 0 unless kept."""
    if not keep_suppressed_cells:
        frame = frame.assign(**{SUPPRESSED_CELLS: 0})
    arrays = [pa.array(frame[name].to_numpy(), type=schema.field(name).type, from_pandas=True) for name in schema.names]
    return pa.Table.from_arrays(arrays, schema=schema)


def _file_token_array(source_files: pa.ChunkedArray, source_file_token: SourceFileToken) -> pa.Array:
    """The token of each file name (null for none), computed once per distinct file."""
    encoded = pc.dictionary_encode(source_files.combine_chunks())
    tokens = pa.array([source_file_token(name) for name in encoded.dictionary.to_pylist()], pa.string())
    return tokens.take(encoded.indices)


def _month_texts(moments: pa.ChunkedArray) -> pa.Array:
    """YYYY-MM of each timestamp, formatted once per distinct month (strftime costs 0.5 us a value)."""
    months = pc.dictionary_encode(pc.floor_temporal(moments.combine_chunks(), unit="month"))
    return pc.strftime(months.dictionary, "%Y-%m").take(months.indices)


class _MessageKeys:
    """Message keys of one group as int64 (file number << 32 | message_index): Arrow looks integers
    up several times faster than (string, int) pairs."""

    def __init__(self, messages: pa.Table):
        self._files = pc.unique(messages.column("source_file_token"))
        self._keys = self.of_table(messages)

    def of_table(self, table: pa.Table) -> pa.Array:
        return self.of(table.column("source_file_token"), table)

    def of(self, file_tokens, table: pa.Table) -> pa.Array:
        files = pc.index_in(file_tokens, value_set=self._files, skip_nulls=True).cast(pa.int64())
        return pc.add(pc.shift_left(files, 32), table.column("message_index").cast(pa.int64()))

    def lookup(self, keys) -> pa.Array:
        """Each of the messages' keys found in `keys`: its first position there, or null."""
        return pc.index_in(self._keys, value_set=keys, skip_nulls=True)

    def message_of(self, table: pa.Table) -> pa.Array:
        """For each row of `table` (child rows), its message's first row, or null."""
        return pc.index_in(self.of_table(table), value_set=self._keys, skip_nulls=True)


def _utilization(
    messages: pa.Table, month: pa.Array, observations: pa.Table, orders: pa.Table, keys: _MessageKeys
) -> pa.Table:
    facility = messages.column("sending_facility").combine_chunks()
    message_type = messages.column("message_type")
    events = [
        _events(
            facility,
            month,
            messages=pa.array(np.ones(messages.num_rows, np.int64)),
            admissions=_flag(pc.equal(message_type, ADMISSION)),
            discharges=_flag(pc.equal(message_type, DISCHARGE)),
        )
    ]
    for children, counted in ((observations, "lab_results"), (orders, "pharmacy_orders")):
        message = keys.message_of(children)
        events.append(
            _events(facility.take(message), month.take(message), **{counted: pa.array(np.ones(children.num_rows, np.int64))})
        )
    return _summed(pa.concat_tables(events), _UTILIZATION_KEYS, _UTILIZATION_COUNTS)


def _events(facility, month, **counts) -> pa.Table:
    rows = len(facility)
    columns = {"sending_facility": facility, "month": month}
    columns |= {name: counts.get(name, pa.array(np.zeros(rows, np.int64))) for name in _UTILIZATION_COUNTS}
    return pa.table(columns, schema=SUMMARY_SCHEMAS["utilization"])


def _lab_values(observations: pa.Table) -> pa.Table:
    flags = pc.utf8_upper(pc.utf8_trim_whitespace(observations.column("abnormal_flag")))
    abnormal = pc.and_(pc.not_equal(flags, ""), pc.not_equal(flags, NORMAL_FLAG))
    rows = observations.select(_TEST_KEYS).append_column(
        "numeric_value", _nan_as_null(observations.column("numeric_value"))
    )
    rows = _with_ones(rows, "results").append_column("abnormal_results", _flag(abnormal))
    return _summed(rows, [*_TEST_KEYS, "numeric_value"], ["results", "abnormal_results"])


def _file_quality(messages: pa.Table, scores: pa.Array) -> pa.Table:
    rows = _with_ones(messages.select(["source_file_token", "sending_facility"]), "messages")
    rows = rows.append_column("score_sum", scores).append_column("scored", _flag(pc.is_valid(scores)))
    return _summed(rows, ["source_file_token", "sending_facility"], ["messages", "score_sum", "scored"])


def _finished_utilization(utilization: pa.Table) -> pa.Table:
    grouped = _summed(utilization, _UTILIZATION_KEYS, _UTILIZATION_COUNTS).to_pandas()
    return to_analytics_table(grouped.sort_values(_UTILIZATION_KEYS, na_position="last"), tables.HOSPITAL_UTILIZATION)


def _finished_message_types(message_types: pa.Table) -> pa.Table:
    grouped = _summed(message_types, _TYPE_KEYS, ["messages"]).to_pandas()
    grouped["share"] = grouped["messages"] / grouped["messages"].sum()
    return to_analytics_table(grouped.sort_values(_TYPE_KEYS, na_position="last"), tables.MESSAGE_TYPES)


def _finished_lab_results(lab_values: pa.Table) -> pa.Table:
    values = _summed(lab_values, [*_TEST_KEYS, "numeric_value"], ["results", "abnormal_results"]).to_pandas()
    rows = []
    for test, by_value in values.groupby(_TEST_KEYS, dropna=False, sort=False):
        numeric = by_value[by_value["numeric_value"].notna()].sort_values("numeric_value")
        distinct, counts = numeric["numeric_value"].to_numpy(np.float64), numeric["results"].to_numpy(np.int64)
        count = int(counts.sum())
        row = dict(zip(_TEST_KEYS, test))
        row |= {
            "results": int(by_value["results"].sum()),
            "abnormal_results": int(by_value["abnormal_results"].sum()),
            "numeric_results": count,
            "value_mean": float(np.dot(distinct, counts) / count) if count else None,
        }
        row |= {column: _quantile(distinct, counts, q) if count else None for column, q in QUANTILES.items()}
        rows.append(row)
    grouped = pd.DataFrame(rows, columns=[*_TEST_KEYS, "results", "abnormal_results", "numeric_results", "value_mean", *QUANTILES])
    grouped["abnormal_rate"] = grouped["abnormal_results"] / grouped["results"]
    return to_analytics_table(grouped.sort_values(_TEST_KEYS, na_position="last"), tables.LAB_RESULTS)


def _quantile(distinct: np.ndarray, counts: np.ndarray, q: float) -> float:
    """The q-quantile (linear interpolation, as pandas and numpy) of the values `distinct` (sorted),
    each repeated its count."""
    ends = np.cumsum(counts)  # value i covers sorted positions ends[i-1] .. ends[i]-1
    position = (int(ends[-1]) - 1) * q
    below = int(np.floor(position))
    low = distinct[np.searchsorted(ends, below, side="right")]
    high = distinct[np.searchsorted(ends, min(below + 1, int(ends[-1]) - 1), side="right")]
    return float(low + (high - low) * (position - below))


def _finished_pharmacy(pharmacy: pa.Table) -> pa.Table:
    """RXE rows per medication and route, with the medication's rank by its orders over all routes
    (unsuppressed: `aggregates.published_ranks` ranks the published orders)."""
    grouped = _summed(pharmacy, ORDER_KEYS, ["orders"]).to_pandas()
    totals = grouped.groupby(medication_key(grouped))["orders"].sum()
    grouped["rank"] = medication_key(grouped).map(totals.rank(method="min", ascending=False))
    return to_analytics_table(grouped.sort_values(["rank", *ORDER_KEYS], na_position="last"), tables.PHARMACY)


def medication_key(frame: pd.DataFrame) -> pd.Series:
    """A medication per row: its give code, else its name, else one unknown medication."""
    medication = frame["give_code"].where(frame["give_code"].notna(), "name\x1f" + frame["give_name"])
    return medication.fillna("\x1f")


def _data_quality_files(quality: pa.Table, file_errors: pa.Table) -> pa.Table:
    by_file = _summed(quality, ["source_file_token"], ["messages", "score_sum", "scored"]).to_pandas()
    frame = by_file.merge(file_errors.to_pandas(), how="outer", on="source_file_token")
    frame = _rated(frame).merge(_file_facilities(quality), how="left", on="source_file_token")
    return to_analytics_table(frame.sort_values("source_file_token", na_position="last"), tables.DATA_QUALITY_FILES)


def _data_quality_facilities(quality: pa.Table, file_errors: pa.Table) -> pa.Table:
    """Messages and scores go by each message's own MSH-4; errors by their file's facility."""
    by_facility = _summed(quality, ["sending_facility"], ["messages", "score_sum", "scored"]).to_pandas()
    errors = file_errors.to_pandas().merge(_file_facilities(quality), how="left", on="source_file_token")
    errors = errors.groupby("sending_facility", dropna=False)["errors"].sum().reset_index()
    frame = _rated(by_facility.merge(errors, how="outer", on="sending_facility"))
    return to_analytics_table(frame.sort_values("sending_facility", na_position="last"), tables.DATA_QUALITY_FACILITIES)


def _rated(frame: pd.DataFrame) -> pd.DataFrame:
    """Missing counts as 0, then the error rate and the mean validation score of the scored messages."""
    for column in ("messages", "errors", "scored"):
        frame[column] = frame[column].fillna(0).astype(np.int64)
    frame["score_sum"] = frame["score_sum"].fillna(0.0)
    frame["mean_validation_score"] = (frame["score_sum"] / frame["scored"]).where(frame["scored"] > 0)
    frame["error_rate"] = frame["errors"] / (frame["messages"] + frame["errors"])
    return frame


def _file_facilities(quality: pa.Table) -> pd.DataFrame:
    """Each file's most frequent MSH-4 among its parsed messages (ties: the first name in order)."""
    counts = quality.filter(pc.is_valid(quality.column("sending_facility"))).to_pandas()
    counts = counts.sort_values(["source_file_token", "messages", "sending_facility"], ascending=[True, False, True])
    return counts.drop_duplicates("source_file_token")[["source_file_token", "sending_facility"]]


def _summed(rows: pa.Table, keys: list[str], counts: list[str]) -> pa.Table:
    """`counts` summed per distinct `keys` (nulls a group of their own), in the table's schema."""
    schema = pa.schema([rows.schema.field(name) for name in [*keys, *counts]])
    if rows.num_rows == 0:
        return schema.empty_table()
    grouped = rows.group_by(keys, use_threads=False).aggregate([(name, "sum") for name in counts])
    return pa.table({name: grouped.column(name if name in keys else f"{name}_sum") for name in schema.names}).cast(schema)


def _with_ones(rows: pa.Table, name: str) -> pa.Table:
    return rows.append_column(name, pa.array(np.ones(rows.num_rows, np.int64)))


def _flag(condition) -> pa.Array:
    """1 where `condition` holds, 0 where it does not or is null."""
    return pc.fill_null(condition, False).cast(pa.int64())


def _nan_as_null(values):
    """pandas skipped NaN in means and quantiles; Arrow sums them, so they become null here."""
    return pc.if_else(pc.is_nan(values), pa.scalar(None, pa.float64()), values)

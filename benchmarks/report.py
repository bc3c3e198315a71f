"""benchmarks/results.md from the measurements `benchmarks.__main__` collected (benchmarks/output/results.json)."""

from __future__ import annotations

import statistics

from benchmarks import listeners_report

TUTORIAL = "tutorial_single_thread"
GB = 10**9
MIB = 2**20
MAKE_RUN_LIMIT_S = 30.0
RAY_SPEEDUP_TARGET = 1.7
PEAK_TARGET_BYTES = 2.5 * GB
GROWTH_TARGET = 1.3
GROWTH_FROM, GROWTH_TO = 500_000, 5_000_000
LARGE = 2_000_000

HL7_ROWS = [
    (TUTORIAL, "the tutorial's Stage 2 parser, one thread, then pandas to Parquet"),
    ("python_hl7", "python-hl7 parsing every message, a few fields to Parquet (smallest corpus only, its first 50,000 messages at most)"),
    ("hl7apy_sample", "hl7apy (tolerant, no group search) on the corpus's first messages only (`BENCH_HL7APY_SAMPLE`, 500 by default: it parses some 40 to 100 messages/s), the same fields as python-hl7's to Parquet; its work alone is the parse loop"),
    ("spark_local", "Spark local mode on every core: text, the tutorial's fields by Spark SQL functions, Parquet"),
    ("ours_one_process", "our reader in a plain loop, one process, no Ray: the five PHI tables to Parquet"),
    ("ours_ray_job", "our Ray Data job (datasource, datasink, atomic publication); work alone: its first job"),
    ("pipeline_cli", "the whole graph from the CLI, cold start (see the pipeline section); work alone: Dagster's run"),
]
MAKE_RUNS = [  # name, short label, what the run is
    ("first_run", "first run", "first run: empty data folder, the synthetic corpora generated"),
    ("corpus_present", "corpus present", "the corpora exist, no output yet (every table rebuilt)"),
    ("second_run", "second run", "`make run` again in the same folder (incremental: nothing new to parse)"),
]


NIGHTLY_TARGETS = ((2_000_000, 0.20), (5_000_000, 0.10))


def write(results: dict, path: str) -> None:
    with open(path, "w") as out:
        out.write(render(results))


def render(results: dict) -> str:
    r = _Results(results)
    lines = _header(r)
    for section in (_tutorial_table, _targets, _hl7, _parse_only, _components, _pipeline, _nightly, _profile, _dicom, _make_run, _live_intake, _not_measured):
        body = section(r)
        if body:
            lines += [""] + body
    return "\n".join(lines) + "\n"


def render_nightly(results: dict) -> str:
    """The nightly section and its targets alone (`python -m benchmarks nightly`)."""
    r = _Results(results)
    targets = [line for line in _targets(r) if "Nightly run" in line]
    header = [line.replace("`make bench`", "`python -m benchmarks nightly`") for line in _header(r)]
    lines = [*header, "", *_nightly(r), "", "| target | measured | result |", "| --- | --- | --- |", *targets]
    return "\n".join(lines) + "\n"


def render_pipeline(results: dict) -> str:
    """The whole pipeline against the tutorial's parse, its step times and its target alone
    (`python -m benchmarks pipeline`)."""
    r = _Results(results)
    targets = [line for line in _targets(r) if line.startswith("| Whole pipeline at 2,000,000")]
    header = [line.replace("`make bench`", "`python -m benchmarks pipeline`") for line in _header(r)]
    lines = [*header, "", *_pipeline(r), "", *_profile(r), "", "| target | measured | result |", "| --- | --- | --- |", *targets]
    return "\n".join(lines) + "\n"


class _Results:
    def __init__(self, results: dict):
        self.raw = results
        self.settings = results["settings"]
        self.quick = self.settings.get("quick", False)
        self.cores = results["machine"]["cores"]
        self.measurements = results["measurements"]

    def get(self, group: str, name: str, size: int | None = None) -> dict | None:
        for m in self.measurements:
            if m["group"] == group and m["name"] == name and (size is None or m["size"] == size):
                return m
        return None

    def sizes(self, group: str, name: str) -> list[int]:
        return sorted({m["size"] for m in self.measurements if m["group"] == group and m["name"] == name and m["runs"]})


def _median(entry: dict | None, key: str) -> float | None:
    if not entry:
        return None
    values = [run[key] for run in entry["runs"] if run.get(key) is not None]
    return statistics.median(values) if values else None


def _peak(entry: dict | None, key: str = "peak_rss") -> int | None:
    if not entry or not entry["runs"]:
        return None
    return max(run.get(key) or 0 for run in entry["runs"])


def _memory(entry: dict | None) -> str:
    """Peak memory in MiB: the RSS sum, then the PSS sum in parentheses where it was measured."""
    rss, pss = _peak(entry), _peak(entry, "peak_pss")
    return f"{_mib(rss)} ({_mib(pss)})" if pss else _mib(rss)


def _first(entry: dict | None, key: str):
    if not entry:
        return None
    return next((run[key] for run in entry["runs"] if run.get(key) is not None), None)


def _ok(entry: dict | None) -> bool:
    return bool(entry and entry["runs"] and not entry.get("error"))


def _s(value: float | None) -> str:
    return "" if value is None else f"{value:,.2f}"


def _rate(count: float | None, seconds: float | None) -> str:
    if not count or not seconds:
        return ""
    return f"{count / seconds:,.0f}"


def _mib(value: float | None) -> str:
    return "" if value is None else f"{value / MIB:,.0f}"


def _ratio(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def _status(entry: dict | None) -> str:
    if entry is None:
        return "not measured"
    if entry.get("error"):
        return "FAILED: " + entry["error"].splitlines()[0][:200].replace("|", "/")
    return "ok"


# Sections ---------------------------------------------------------------------------------------

def _header(r: _Results) -> list[str]:
    machine, settings = r.raw["machine"], r.settings
    load = r.raw.get("load_at_start"), r.raw.get("load_at_end")
    lines = [
        "# Benchmark results",
        "",
        f"Written by `make bench` ({'`BENCH_QUICK=1`: a smoke test, small sizes, one run each; no target is evaluated' if r.quick else 'full plan'}), "
        f"{r.raw.get('started', '')} to {r.raw.get('finished', 'unfinished')}"
        + (f", {r.raw['bench_s'] / 60:.0f} min" if r.raw.get("bench_s") else "") + ".",
        "",
        f"Machine: **{machine['cores']} cores** ({machine.get('physical_cores')} physical; {machine.get('cpu') or 'unknown CPU'}), "
        f"{machine['memory_bytes'] / 2**30:.0f} GiB, {machine['python']}. "
        + (f"Load average (1 min) {load[0][0]:.1f} at the start, {load[1][0]:.1f} at the end: "
           + ("the machine was busy with other work: times are pessimistic, and speed-ups of multi-process runs "
              "(Ray, Spark) over one process are inflated, since a busy machine gives more processes a larger share "
              "of its cores" if max(load[0][0], load[1][0]) > 1.5 else "quiet") + "."
           if load[0] and load[1] else ""),
        "",
        f"Each measurement ran {settings['repeats']} time(s), each in a fresh process; the tables show medians, and for "
        "memory the largest peak of the runs. Peak memory is that of the whole process tree (Ray's workers included): "
        "RSS, the sum of the processes' resident sizes (sampled every 0.1 s), counts memory shared between processes "
        "(Ray's object store, libraries) once per process, as `ps` would; PSS in parentheses (sampled every 0.5 s) "
        "divides shared pages among the processes sharing them, so it is what the tree costs the machine. Corpus: the "
        "tutorial's four templates (ADT^A01, ORU^R01, RDE^O11, ADT^A03), one message per line, 500 messages per file. "
        f"Sizes: {', '.join(f'{s:,}' for s in settings['sizes'])} messages.",
    ]
    return lines


def _tutorial_table(r: _Results) -> list[str]:
    sizes = [s for s in r.sizes("hl7", "ours_ray_job")]
    rows = []
    if sizes:
        size = max(sizes)
        ray = r.get("hl7", "ours_ray_job", size)
        messages = _first(ray, "messages")
        warm, first, wall = _median(ray, "warm_job_s"), _median(ray, "job_s"), _median(ray, "wall_s")
        rows.append(
            f"| **HL7 Messages** | Message parsing, patient extraction | our Ray Data job, {size:,} messages to the five PHI "
            f"tables | **{_rate(messages, warm)} messages/s** (steady job; first job of a session {_rate(messages, first)}/s; "
            f"with Ray's start and stop {_rate(messages, wall)}/s) | {_memory(ray)} MiB |"
        )
    dicom_ray = r.get("dicom", "dicom_ray_job")
    if _ok(dicom_ray):
        files, corpus = _first(dicom_ray, "messages"), r.raw.get("dicom_corpus", {})
        warm = _median(dicom_ray, "warm_job_s")
        rows.append(
            f"| **DICOM Images** | Metadata extraction, image analysis | our Ray Data job, {files:,} synthetic files "
            f"({corpus.get('bytes', 0) / MIB:,.0f} MiB): metadata and pixel statistics | **{_rate(files, warm)} images/s** "
            f"({corpus.get('bytes', 0) / MIB / warm:,.0f} MiB/s; first job {_rate(files, _median(dicom_ray, 'job_s'))}/s) | "
            f"{_memory(dicom_ray)} MiB |"
        )
    for name, label, focus in (
        ("validation", "**Medical Validation**", "Compliance checking, quality validation"),
        ("analytics", "**Healthcare Analytics**", "Population health, clinical insights"),
        ("deidentify", "De-identification (added)", "HIPAA Safe Harbor on every record"),
    ):
        sizes = r.sizes("inputs", name)
        if not sizes:
            continue
        entry = r.get("inputs", name, max(sizes))
        if not _ok(entry):
            rows.append(f"| {label} | {focus} | `{name}` | {_status(entry)} | |")
            continue
        step, messages, rows_in = _median(entry, "step_s"), _first(entry, "messages"), _first(entry, "rows")
        what = {
            "validation": f"`validate_messages` over {messages:,} parsed messages, one process",
            "analytics": f"`publish_all` (nine tables, small cells suppressed) over {rows_in:,} de-identified rows "
                         f"({messages:,} messages), one process",
            "deidentify": f"`deidentify_hl7_tables` over {rows_in:,} PHI rows ({messages:,} messages), one process",
        }[name]
        rate = f"**{_rate(rows_in, step)} rows/s** ({_rate(messages, step)} messages/s)" if name == "analytics" else (
            f"**{_rate(messages, step)} messages/s** ({_rate(rows_in, step)} rows/s)")
        rows.append(f"| {label} | {focus} | {what} | {rate} | {_memory(entry)} MiB (inputs loaded: "
                    f"{_mib(_median(entry, 'inputs_rss'))} MiB) |")
    sizes = r.sizes("pipeline", "pipeline_cli")
    if sizes:
        size = max(sizes)
        entry = r.get("pipeline", "pipeline_cli", size)
        rows.append(
            f"| Whole pipeline (added) | Every asset and check from the CLI | `dagster asset materialize --select '*'`, "
            f"{size:,} messages, cold start | {_rate(_first(entry, 'messages') or size, _median(entry, 'wall_s'))} messages/s "
            f"({_s(_median(entry, 'wall_s'))} s){'' if _ok(entry) else ' — ' + _status(entry)} | {_memory(entry)} MiB |"
        )
    if not rows:
        return []
    return [
        "## The tutorial's performance table, measured",
        "",
        "The table of the tutorial (\"Medical data processing performance\"), its `[Measured]` cells filled in on this "
        f"machine ({r.cores} cores) at the largest size measured. Throughput is over the step alone; memory is the "
        "peak of the process that ran it (for one-process steps, the loaded inputs included, shown apart).",
        "",
        "| Data Type | Processing Focus | measured as | Throughput | Memory Usage |",
        "| --- | --- | --- | --- | --- |",
        *rows,
    ]


def _targets(r: _Results) -> list[str]:
    rows = []

    def add(target: str, measured: str, met: bool | None, reason: str = "") -> None:
        if r.quick and met is not None:
            result = f"not evaluated (quick mode; would be {'met' if met else 'not met'})"
        else:
            result = reason or ("**met**" if met else "**not met**")
        rows.append(f"| {target} | {measured} | {result} |")

    # 1. The whole pipeline against the tutorial's parse at 2,000,000 messages.
    pipeline, tutorial = r.get("pipeline", "pipeline_cli", LARGE), r.get("hl7", TUTORIAL, LARGE)
    target = "Whole pipeline at 2,000,000 messages no slower than the tutorial's single-thread parse of the same files"
    if pipeline and pipeline["runs"] and tutorial and tutorial["runs"]:
        p, t = _median(pipeline, "wall_s"), _median(tutorial, "wall_s")
        failed = not _ok(pipeline)
        add(target, f"pipeline {p:,.1f} s, tutorial {t:,.1f} s ({p / t:.2f}×)" + (" — the pipeline run FAILED" if failed else ""),
            (p <= t) and not failed)
    else:
        add(target, "", None, "not measured: add 2000000 to BENCH_SIZES (or run `python -m benchmarks pipeline`)")

    # 2, 3. Ray against one process of the same code.
    cores_note = "" if r.cores == 2 else f" (measured on {r.cores} cores)"
    ray, one = r.get("hl7", "ours_ray_job", 500_000), r.get("hl7", "ours_one_process", 500_000)
    target = f"Ray on 2 cores ≥ {RAY_SPEEDUP_TARGET}× one process of the same code, HL7 parsing at 500,000 messages"
    if _ok(ray) and _ok(one):
        base = _median(one, "seconds")
        warm, first, wall = base / _median(ray, "warm_job_s"), base / _median(ray, "job_s"), _median(one, "wall_s") / _median(ray, "wall_s")
        add(target + cores_note, f"{warm:.2f}× steady job; {first:.2f}× first job of a session; {wall:.2f}× with Ray's start and stop",
            warm >= RAY_SPEEDUP_TARGET)
    else:
        add(target, "", None, "not measured: 500000 not in BENCH_SIZES" if not ray else "not measured: " + _status(ray or one))
    ray, one = r.get("dicom", "dicom_ray_job"), r.get("dicom", "dicom_single_process")
    target = f"Ray on 2 cores ≥ {RAY_SPEEDUP_TARGET}× one process of the same code, DICOM pixel statistics"
    if _ok(ray) and _ok(one):
        warm = _median(one, "warm_job_s") / _median(ray, "warm_job_s")
        first = _median(one, "job_s") / _median(ray, "job_s")
        add(target + cores_note, f"{warm:.2f}× steady (second job against the loop's second pass); {first:.2f}× first "
            f"job against the first pass ({_first(one, 'messages'):,} files)", warm >= RAY_SPEEDUP_TARGET)
    else:
        add(target, "", None, "not measured: " + _status(ray or one))

    # 4, 5. Memory.
    target = "Peak memory < 2.5 GB at 2,000,000 messages (whole pipeline, process tree; judged on the RSS sum)"
    if pipeline and pipeline["runs"]:
        peak, pss = _peak(pipeline), _peak(pipeline, "peak_pss")
        add(target, f"RSS {peak / GB:.2f} GB ({peak / MIB:,.0f} MiB)" + (f"; PSS {pss / GB:.2f} GB" if pss else "")
            + f", during {_peak_step(pipeline) or 'an unknown step'}" + ("" if _ok(pipeline) else " — the run FAILED"),
            peak < PEAK_TARGET_BYTES and _ok(pipeline))
    else:
        add(target, "", None, "not measured: add 2000000 to BENCH_SIZES (or run `python -m benchmarks pipeline`)")
    sizes = r.sizes("pipeline", "pipeline_cli")
    target = f"Memory growth < {GROWTH_TARGET}× from 500,000 to 5,000,000 messages (whole pipeline)"
    if GROWTH_FROM in sizes and GROWTH_TO in sizes:
        growth = _peak(r.get("pipeline", "pipeline_cli", GROWTH_TO)) / _peak(r.get("pipeline", "pipeline_cli", GROWTH_FROM))
        add(target, f"{growth:.2f}×", growth < GROWTH_TARGET)
    elif len(sizes) >= 2:
        low = GROWTH_FROM if GROWTH_FROM in sizes else sizes[0]
        growth = _peak(r.get("pipeline", "pipeline_cli", sizes[-1])) / _peak(r.get("pipeline", "pipeline_cli", low))
        add(target, f"{low:,} → {sizes[-1]:,}: {growth:.2f}× (see the pipeline section)", None,
            "not measured at 5,000,000 (`python -m benchmarks.load` runs that size); the ratio measured is only indicative")
    else:
        add(target, "", None, "not measured")

    # Nightly runs against full runs of the same history.
    for size, share in NIGHTLY_TARGETS:
        target = f"Nightly run with 0.1% new data ≤ {share:.0%} of a full run's time, {size:,} messages of history"
        full, night = r.get("nightly", "full_run", size), r.get("nightly", "nightly_run", size)
        if _ok(full) and _ok(night):
            ratio = _median(night, "wall_s") / _median(full, "wall_s")
            add(target, f"{_median(night, 'wall_s'):,.1f} s against {_median(full, 'wall_s'):,.1f} s ({ratio:.0%})", ratio <= share)
        else:
            add(target, "", None, f"not measured: add {size} to BENCH_NIGHTLY_SIZES" if not full else "not measured: " + _status(full if not _ok(full) else night))

    # 6. make run.
    for name, label, _ in MAKE_RUNS:
        entry = r.get("make_run", name)
        target = f"`make run` default graph under {MAKE_RUN_LIMIT_S:.0f} s on 2 cores: {label}"
        if entry and entry["runs"]:
            wall = _median(entry, "wall_s")
            add(target + cores_note, f"{wall:.1f} s (CLI wall; Dagster's run {_s(_median(entry, 'run_s'))} s)"
                + ("" if _ok(entry) else " — FAILED"), wall < MAKE_RUN_LIMIT_S and _ok(entry))
        else:
            add(target, "", None, "not measured (BENCH_MAKE_RUN=0)")
    return [
        "## Targets",
        "",
        "Reported, never asserted in tests. \"Steady job\" is a second job on the same Ray, \"first job\" the first "
        "job of a fresh Ray session (Ray Data's own start included); neither includes Ray's start and stop.",
        "",
        "| target | measured | result |",
        "| --- | --- | --- |",
        *rows,
    ]


def _hl7(r: _Results) -> list[str]:
    sizes = sorted({m["size"] for m in r.measurements if m["group"] in ("hl7", "pipeline")})
    if not sizes:
        return []
    lines = [
        "## HL7: the tutorial's corpus to Parquet, side by side",
        "",
        "Whole process: from the command's start to its exit, as a user would time it (interpreter, imports, Ray's or "
        "Spark's start and stop included). Work alone: the measured step without those (see each row's note). "
        "× tutorial: the tutorial parser's whole-process time over this row's (above 1: faster).",
        "",
        "| messages | measurement | rows out | whole process (s) | messages/s | × tutorial | work alone (s) | messages/s, work alone | peak memory, MiB: RSS (PSS) |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for size in sizes:
        tutorial_wall = _median(r.get("hl7", TUTORIAL, size), "wall_s")
        for name, _ in HL7_ROWS:
            entry = r.get("pipeline" if name == "pipeline_cli" else "hl7", name, size)
            if entry is None:
                continue
            if not entry["runs"]:
                lines.append(f"| {size:,} | {name}: {_status(entry)} | | | | | | | |")
                continue
            rows = _first(entry, "messages")
            wall = _median(entry, "wall_s")
            work = {"ours_ray_job": "job_s", "spark_local": "step_s", "hl7apy_sample": "step_s", "pipeline_cli": "run_s"}.get(name)
            work_s = _median(entry, work) if work else None
            label = name if _ok(entry) else f"{name} ({_status(entry)})"
            times = f"{tutorial_wall / wall:.2f}" if tutorial_wall and name != "hl7apy_sample" else ""
            lines.append(
                f"| {size:,} | {label} | {rows or 0:,} | {_s(wall)} | {_rate(rows, wall)} | {times} | {_s(work_s)} | "
                f"{_rate(rows, work_s)} | {_memory(entry)} |"
            )
    lines += [""] + [f"- `{name}`: {text}." for name, text in HL7_ROWS]
    lines.append("- `ours_ray_job`, second job on the same Ray (steady throughput): " + ", ".join(
        f"{size:,}: {_s(_median(r.get('hl7', 'ours_ray_job', size), 'warm_job_s'))} s" for size in r.sizes("hl7", "ours_ray_job")) + ".")
    return lines


def _parse_only(r: _Results) -> list[str]:
    entry = r.get("hl7", "parse_only_single_core")
    if not _ok(entry):
        return []
    rates = {parser: statistics.median(run["rates"][parser] for run in entry["runs"]) for parser in entry["runs"][0]["rates"]}
    hl7apy = r.get("hl7", "hl7apy_sample")
    hl7apy_rate = (_first(hl7apy, "messages") / _median(hl7apy, "step_s")) if _ok(hl7apy) else None
    hl7apy_cells = ("", "") if hl7apy_rate is None else (f"{hl7apy_rate:,.0f}", f"{rates['ours'] / hl7apy_rate:,.0f}")
    return [
        "## HL7 parsing alone, one core",
        "",
        f"Messages per second on the {entry['size']:,}-message corpus (its first 50,000 messages at most), each parser reading the files itself and writing "
        "nothing (best of three passes per run, median of the runs), pinned to one core. python-hl7 on the first 2,000 "
        "messages; hl7apy (tolerant validation, no group search) from its own measurement on the first "
        f"{_first(hl7apy, 'messages') or 0:,} messages.",
        "",
        "| messages | tutorial's parser | python-hl7 | hl7apy | ours | ours, general path | ours / tutorial | ours / python-hl7 | ours / hl7apy |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        f"| {entry['size']:,} | {rates['tutorial_naive']:,.0f} | {rates['python_hl7']:,.0f} | "
        f"{hl7apy_cells[0]} | {rates['ours']:,.0f} | {rates['ours_general_path']:,.0f} | "
        f"{rates['ours'] / rates['tutorial_naive']:.2f} | {rates['ours'] / rates['python_hl7']:.0f} | "
        f"{hl7apy_cells[1]} |",
    ]


def _components(r: _Results) -> list[str]:
    entries = [m for m in r.measurements if m["group"] == "inputs"]
    if not entries:
        return []
    lines = [
        "## De-identification, validation and analytics",
        "",
        "Each step alone in one process (no Ray), over tables prepared once per corpus (`benchmarks/inputs.py`: our "
        "reader, `deidentify_hl7_tables` under a random key, `with_validation`) and loaded before the clock starts. "
        "Input rows: every row of the tables the step reads. In the pipeline the same code runs inside Ray tasks: "
        "de-identification and scoring per group of part files; analytics summarized per group of part files, "
        "the summaries combined in one task.",
        "",
        "| messages | step | input rows | step alone (s) | messages/s | input rows/s | whole process (s) | peak memory, MiB: RSS (PSS) | inputs loaded (MiB) |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    labels = {"deidentify": "de-identification: `deidentify_hl7_tables`", "validation": "validation: `validate_messages`",
              "analytics": "analytics: `publish_all`", "prepare": "preparing the inputs"}
    for m in sorted(entries, key=lambda m: (m["size"], list(labels).index(m["name"]))):
        if not m["runs"]:
            lines.append(f"| {m['size']:,} | {labels[m['name']]}: {_status(m)} | | | | | | | |")
            continue
        step, messages, rows = _median(m, "step_s"), _first(m, "messages"), _first(m, "rows")
        lines.append(
            f"| {m['size']:,} | {labels[m['name']]} | {rows:,} | {_s(step)} | {_rate(messages, step)} | {_rate(rows, step)} | "
            f"{_s(_median(m, 'wall_s'))} | {_memory(m)} | {_mib(_median(m, 'inputs_rss'))} |"
        )
    scores = [(m["size"], _median(m, "scores_only_s")) for m in entries if m["name"] == "validation" and m["runs"]]
    if scores:
        lines += ["", "- Validation as the pipeline runs it (`with_validation`: the scores without the MSH-10 and file-name "
                  "tokens, which de-identification makes anyway): " + ", ".join(f"{size:,}: {s:.2f} s" for size, s in scores) + "."]
    prepared = r.raw.get("prepared", {})
    if prepared:
        lines.append("- Preparing the inputs (one process, not part of any measurement): " + "; ".join(
            f"{int(size):,}: parse {p['parse_s']:.1f} s, de-identify {p['deidentify_s']:.1f} s, score {p['score_s']:.1f} s"
            for size, p in sorted(prepared.items(), key=lambda item: int(item[0]))) + ".")
    return lines


def _pipeline(r: _Results) -> list[str]:
    sizes = r.sizes("pipeline", "pipeline_cli")
    if not sizes:
        return []
    lines = [
        "## The whole pipeline from the CLI against the tutorial's parse",
        "",
        "`dagster asset materialize -m medical_assets.definitions --select '*'`: every asset and check (landing "
        "manifests with checksums, parse, de-identification with validation, DICOM export, analytics, dashboards), "
        "on a cold start: a new Dagster home, data folder and Ray each run. `MEDICAL_ASSETS_HL7_SOURCE` is the tutorial "
        "corpus, `MEDICAL_ASSETS_DICOM_SOURCE` an empty folder (the DICOM steps run on no file). Dagster's run: from "
        "RUN_START to the run's end in its log (1 s resolution); the rest of the wall time is the CLI's start "
        "(imports, loading the definitions) and Ray's shutdown.",
        "",
        "| messages | pipeline, CLI wall (s) | Dagster's run (s) | tutorial's parse, whole process (s) | pipeline / tutorial | pipeline messages/s | peak memory, MiB: RSS (PSS) | step at the peak | status |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for size in sizes:
        entry, tutorial = r.get("pipeline", "pipeline_cli", size), r.get("hl7", TUTORIAL, size)
        wall, t = _median(entry, "wall_s"), _median(tutorial, "wall_s")
        lines.append(
            f"| {size:,} | {_s(wall)} | {_s(_median(entry, 'run_s'))} | {_s(t)} | {_ratio(wall / t if wall and t else None)} | "
            f"{_rate(_first(entry, 'messages') or size, wall)} | {_memory(entry)} | {_peak_step(entry)} | {_status(entry)} |"
        )
    if len(sizes) >= 2:
        low = GROWTH_FROM if GROWTH_FROM in sizes else sizes[0]
        high = sizes[-1]
        low_entry, high_entry = r.get("pipeline", "pipeline_cli", low), r.get("pipeline", "pipeline_cli", high)
        a, b = _peak(low_entry), _peak(high_entry)
        text = (f"Memory growth: the pipeline's peak RSS at {low:,} messages {a / MIB:,.0f} MiB, at {high:,} "
                f"{b / MIB:,.0f} MiB: **{b / a:.2f}×** for {high / low:.0f}× the messages")
        pa_, pb = _peak(low_entry, "peak_pss"), _peak(high_entry, "peak_pss")
        if pa_ and pb:
            text += f" (PSS: {pa_ / MIB:,.0f} to {pb / MIB:,.0f} MiB, {pb / pa_:.2f}×)"
        lines += ["", text + "."]
    return lines


def _peak_step(entry: dict | None) -> str:
    """The step running at the RSS peak of the run with the largest peak."""
    if not entry or not entry["runs"]:
        return ""
    run = max(entry["runs"], key=lambda run: run.get("peak_rss") or 0)
    return run.get("peak_step") or ""


def _profile(r: _Results) -> list[str]:
    sizes = r.sizes("pipeline", "pipeline_cli")
    if not sizes:
        return []
    size = 500_000 if 500_000 in sizes else sizes[-1]
    entry = r.get("pipeline", "pipeline_cli", size)
    steps = {}
    for run in entry["runs"]:
        for step, seconds in run.get("steps", {}).items():
            steps.setdefault(step, []).append(seconds)
    if not steps:
        return []
    medians = sorted(((statistics.median(v), k) for k, v in steps.items()), reverse=True)
    total = sum(s for s, _ in medians)
    wall = _median(entry, "wall_s")
    lines = [
        f"## Where the pipeline's time goes at {size:,} messages",
        "",
        f"Dagster's own step timings (median of the runs), slowest first; the steps add up to {total:,.1f} s of a "
        f"{wall:,.1f} s CLI run. Ray starts inside the first step that hands a job to its workers (on a large "
        "first run the HL7 parse: checksums and small jobs run in the run's own process), so that step carries Ray's "
        "start and the first job of the session.",
        "",
        "| step | seconds | share of the steps |",
        "| --- | ---: | ---: |",
    ]
    lines += [f"| {step} | {seconds:,.2f} | {seconds / total:.0%} |" for seconds, step in medians if seconds >= 0.05]
    if entry.get("error"):
        lines += ["", f"The run failed ({entry['error'].splitlines()[0][:300]}): the steps after it did not run."]
    return lines


def _dicom(r: _Results) -> list[str]:
    loop, ray = r.get("dicom", "dicom_single_process"), r.get("dicom", "dicom_ray_job")
    if not _ok(loop):
        return []
    corpus = r.raw.get("dicom_corpus", {})
    lines = [
        "## DICOM pixel statistics",
        "",
        f"{corpus.get('files', 0):,} synthetic DICOM files ({corpus.get('bytes', 0) / MIB:,.0f} MiB: CT, MR, CR/DX, US; "
        "uncompressed, deflated, RLE). `dicom_single_process`: a plain loop calling our reader (pydicom and numpy) on "
        "each file, two passes (the first loads pydicom's pixel handlers). `dicom_ray_job`: our Ray job (statistics "
        "only, no thumbnails, like the loop) run twice on one Ray: the first job includes Ray Data's one-off start in a "
        "fresh session, the second is the engine's steady throughput; the whole process adds Ray's start and stop. "
        "Speed-ups compare second with second and first with first.",
        "",
        "| measurement | whole process (s) | first pass or job (s) | second pass or job (s) | images/s (second) | speed-up (second) | speed-up (first) | peak memory, MiB: RSS (PSS) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    warm, first = _median(loop, "warm_job_s"), _median(loop, "job_s")
    for entry in (loop, ray):
        if not _ok(entry):
            if entry:
                lines.append(f"| {entry['name']}: {_status(entry)} | | | | | | | |")
            continue
        lines.append(
            f"| {entry['name']} | {_s(_median(entry, 'wall_s'))} | {_s(_median(entry, 'job_s'))} | "
            f"{_s(_median(entry, 'warm_job_s'))} | {_rate(_first(entry, 'messages'), _median(entry, 'warm_job_s'))} | "
            f"{warm / _median(entry, 'warm_job_s'):.2f} | {first / _median(entry, 'job_s'):.2f} | {_memory(entry)} |"
        )
    return lines


def _make_run(r: _Results) -> list[str]:
    entries = [(r.get("make_run", name), label) for name, _, label in MAKE_RUNS]
    if not any(e for e, _ in entries):
        return []
    setting = r.settings.get("make_run")
    graph = "the default data (50,000 synthetic HL7 messages, 300 synthetic DICOM files)" if setting == "default" else (
        f"QUICK mode's smaller data ({int(setting['MEDICAL_ASSETS_SYNTHETIC_HL7_MESSAGES']):,} synthetic HL7 messages, "
        f"{int(setting['MEDICAL_ASSETS_SYNTHETIC_DICOM_FILES']):,} synthetic DICOM files)")
    lines = [
        "## `make run`: the default graph",
        "",
        f"`dagster asset materialize -m medical_assets.definitions --select '*'` on {graph}, as `make run` runs it "
        f"(its own Dagster home). Target: under {MAKE_RUN_LIMIT_S:.0f} s on 2 cores.",
        "",
        "| run | CLI wall (s) | Dagster's run (s) | peak memory, MiB: RSS (PSS) | slowest steps (s) | status |",
        "| --- | ---: | ---: | ---: | --- | --- |",
    ]
    for entry, label in entries:
        if not entry:
            continue
        lines.append(
            f"| {label} | {_s(_median(entry, 'wall_s'))} | {_s(_median(entry, 'run_s'))} | {_memory(entry)} | "
            f"{_slowest_steps(entry, 4)} | {_status(entry)} |"
        )
    return lines


def _nightly(r: _Results) -> list[str]:
    sizes = r.sizes("nightly", "full_run")
    if not sizes:
        return []
    lines = [
        "## Nightly: a day of new files on a history",
        "",
        "The whole pipeline from the CLI on the tutorial's messages with as many distinct patients as messages "
        "(first run), then the same command in the same folder after a night's files arrived (0.1% more messages, "
        "new patients). Medians of the runs; peak memory of the process tree.",
        "",
        "| history (messages) | full run (s) | nightly run (s) | nightly / full | peak memory, MiB: full / nightly (PSS) | nightly's slowest steps (s) | status |",
        "| ---: | ---: | ---: | ---: | --- | --- | --- |",
    ]
    for size in sizes:
        full, night = r.get("nightly", "full_run", size), r.get("nightly", "nightly_run", size)
        ratio = _median(night, "wall_s") / _median(full, "wall_s") if _ok(full) and _ok(night) else None
        lines.append(
            f"| {size:,} | {_s(_median(full, 'wall_s'))} | {_s(_median(night, 'wall_s'))} | "
            f"{f'{ratio:.0%}' if ratio is not None else '—'} | {_memory(full)} / {_memory(night)} | "
            f"{_slowest_steps(night, 3)} | {_status(full) if not _ok(full) else _status(night)} |"
        )
    return lines


def _slowest_steps(entry: dict | None, count: int) -> str:
    """The `count` slowest Dagster steps of an entry's runs (medians), slowest first."""
    steps: dict[str, list[float]] = {}
    for run in (entry or {}).get("runs", []):
        for step, seconds in run.get("steps", {}).items():
            steps.setdefault(step, []).append(seconds)
    slowest = sorted(((statistics.median(v), k) for k, v in steps.items()), reverse=True)[:count]
    return ", ".join(f"{k} {v:.1f}" for v, k in slowest)


def _live_intake(r: _Results) -> list[str]:
    return listeners_report.section(r.raw)


def _not_measured(r: _Results) -> list[str]:
    items = r.raw.get("not_measured", [])
    failed = [m for m in r.measurements if m.get("error")]
    if not items and not failed:
        return []
    lines = ["## Not measured, and failures", ""]
    lines += [f"- `{item['name']}`: not measured: {item['reason']}." for item in items]
    for m in failed:
        lines.append(f"- `{m['name']}` at {m['size']:,}: {m['error'].splitlines()[0][:300]}")
    return lines

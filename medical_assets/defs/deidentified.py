"""De-identified zone assets: the HL7 tables under Safe Harbor (or date shift), and the DICOM export.

Each reads the PHI zone in Ray workers, writes through one publication per zone, stamps every
Parquet file with its compliance metadata, and leaves an audit record of the PHI it read.
"""

import datetime as dt
import json
from collections import Counter
from importlib.metadata import version

import dagster as dg
import pyarrow as pa

from medical_assets.defs import carry_over, groups, leak_gate, versions
from medical_assets.defs.carry_over import key_settings
from medical_assets.defs.metadata import count_preview, preview_cache, table_metadata, value_counts
from medical_assets.defs.resources import PipelineConfig, PrivacyResource, RayResource
from medical_assets.defs.selection import selected_results
from medical_assets.defs.specs import publishing_step, table_spec
from medical_assets.defs.staging import recovered_publication, staging
from medical_assets.dicom.export import EXPORT_TABLES as DICOM_EXPORT_TABLES
from medical_assets.engine import cell_texts, census_parts, deid_jobs, dicom_carry, identifier_parts
from medical_assets.engine.part_groups import phi_part_groups
from medical_assets.privacy.hl7_deid import compliance_metadata
from medical_assets.privacy.hl7_deid_tables import DEID_HL7_TABLES
from medical_assets.step_records import StepBasis
from medical_assets.storage import restrict_to_owner

DEID_FILES = "dicom"  # <data>/deid/dicom/: the de-identified DICOM files
DEID_FILES_ASSET = "dicom_files"  # their asset: deid/dicom_files
HL7_LEAK_CHECK = "no_identifiers_leaked_hl7"
DICOM_LEAK_CHECK = "no_identifiers_leaked_dicom"
PRIVACY_FOLDER = "privacy"  # <manifests>/privacy/<step>.json: counts for the privacy report, never a value
_DESCRIPTIONS = {
    "hl7_messages": "One row per parsed message, de-identified: patient token, ZIP3, year, age band; no names or IDs.",
    "hl7_lab_results": "One row per OBX, de-identified: codes, numeric and coded values, year; free text removed.",
    "hl7_pharmacy_orders": "One row per RXE, de-identified: medication, dose, route, frequency, years; no order numbers.",
    "hl7_encounters": "One row per PV1 visit, de-identified: class, unit, service, years and length of stay; no doctor or room.",
    "dicom_images": "One row per exported image, de-identified (PS3.15 Annex E): keyed UIDs, patient token, year, pixel statistics.",
    "dicom_thumbnails": "64 x 64 thumbnails of the exported images only (none with burned-in text), keyed by the new SOP UID.",
    "dicom_files": "The de-identified DICOM files (PS3.15 Annex E basic profile), under deid/dicom/<study>/<series>/<sop>.dcm.",
    "dicom_deid_excluded": "PHI zone: images kept out of the export (burned-in annotation risk, failures), with the reason.",
}
_PREVIEW_COLUMN = {
    "hl7_messages": "message_type",
    "hl7_lab_results": "observation_name",
    "hl7_pharmacy_orders": "give_name",
    "hl7_encounters": "patient_class",
    "dicom_images": "modality",
    "dicom_thumbnails": "frame_index",
    "dicom_deid_excluded": "reason",
}


def deid_key(table: str) -> dg.AssetKey:
    return dg.AssetKey(["deid", table])


def compliance_stamp(profile: str, key_id: str, run_id: str, reversible: bool = False, **extra: str) -> dict[str, str]:
    """What every file of deid/ says of how it was made: profile, key id, code version, run, time."""
    return {
        **{key.decode(): value.decode() for key, value in compliance_metadata(profile, key_id, reversible).items()},
        **{f"deid.{name}": value for name, value in extra.items()},
        "medical_assets.run_id": run_id,
        "medical_assets.created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "medical_assets.version": version("medical-assets"),
    }


def stamped(
    schemas: dict[str, pa.Schema], profile: str, key_id: str, run_id: str, reversible: bool = False
) -> dict[str, pa.Schema]:
    """Every Parquet file of deid/ says how it was made (schema metadata, not repeated columns)."""
    stamp = {key.encode(): value.encode() for key, value in compliance_stamp(profile, key_id, run_id, reversible).items()}
    return {name: schema.with_metadata({**(schema.metadata or {}), **stamp}) for name, schema in schemas.items()}


@publishing_step(
    "hl7_deidentified_tables",
    [
        # dicom_images too: a PatientAge of 090Y makes the patient 90+ in HL7 as well.
        table_spec(deid_key(table), sorted({table, "hl7_messages", "dicom_images"}), groups.DEID, versions.HL7_DEID,
                   {"parquet", "hl7"}, _DESCRIPTIONS[table])
        for table in DEID_HL7_TABLES
    ],
    HL7_LEAK_CHECK,
    "deid/hl7_*",
)
def hl7_deidentified_tables(
    context: dg.AssetExecutionContext, pipeline: PipelineConfig, ray_engine: RayResource, privacy: PrivacyResource
):
    settings = pipeline.settings()
    ring = privacy.key_ring(settings, context.log)
    key = ring.current
    deid = settings.zone("deid")
    schemas = stamped(DEID_HL7_TABLES, settings.deid_profile, key.key_id, context.run.run_id, settings.reversible_tokens)
    publication = recovered_publication(context, deid)
    phi = settings.zone("phi")
    basis = StepBasis(
        {**key_settings(ring, settings), "reversible tokens": settings.reversible_tokens,
         "vocabulary threshold": settings.vocabulary_min_patients, "patient id scope": settings.patient_id_scope},
        leak_gate.leak_check_inputs(settings, vocabulary=False),  # the PHI tables it de-identifies are among them
    )
    outputs = {f"deid/{t}": deid.child(t) for t in schemas} | {
        "phi/" + "/".join(leak_gate.VOCABULARY_FILE): phi.child(*leak_gate.VOCABULARY_FILE),
        "privacy record": privacy_record(settings, "hl7"),
    }
    record, decision = carry_over.decide(context, settings, "hl7_deidentified_tables", basis, outputs)
    if decision.carried is not None:
        details = decision.carried.details
        yield from leak_gate.carried_over_checks(
            context, HL7_LEAK_CHECK, [deid_key(t) for t in schemas], details["check"], decision.carried.run_id
        )
        results = _hl7_results(settings, schemas, details["counts"], details["withheld"], key.key_id)
        yield from selected_results(context, carry_over.marked(results, decision.carried))
        return
    # The parts of the last publication that the night's data leaves as they were are carried over.
    earlier = decision.previous.details.get("parts") if decision.previous is not None else None
    with staging(context, settings, ray_engine, publication, phi_read="HL7 tables to the de-identified zone", key_id=key.key_id):
        # What every part's de-identification must know of all the data: old patients, vocabulary.
        plan = census_parts.plan_hl7_parts(phi, settings.vocabulary_min_patients, settings.patient_id_scope, earlier)
        context.log.info(
            f"hl7_deidentified_tables: {len(plan.carried):,} part(s) carried over, {len(plan.computed):,} "
            f"de-identified ({plan.why})"
        )
        carried_files = census_parts.stage_carried(deid, publication, schemas, plan.carried)
        by_part = {name: dict(earlier[name]["counts"]) for name in plan.carried}
        deid_jobs.deidentify_hl7(
            phi, {t: publication.staged(t) for t in schemas}, schemas, ring, settings.deid_profile,
            settings.reversible_tokens, progress_logger(context, "HL7 de-identification"), plan.census,
            settings.vocabulary_min_patients, settings.patient_id_scope, parts=plan.computed, by_part=by_part,
            # The leak check's identifiers of the parts it reads, collected by the same tasks.
            keep_identifiers=identifier_parts.identifiers_to_keep(phi, plan.computed),
        )
        merged_index = leak_gate.merge_index_for(len(plan.computed), len(plan.carried))
        # From the kept parts, while this step goes on.
        leak_gate.prepare_identifier_index(context.run.run_id, settings, merged_index)
    counts = dict(sum((Counter(part) for part in by_part.values()), Counter()) + Counter(files=len(plan.digests)))
    leak_gate.save_vocabulary(settings, plan.census.vocabulary)
    census_parts.save_published_census(phi, plan.census)
    restrict_to_owner(phi)
    withheld = deid_jobs.withheld_counts(counts)
    record_privacy(settings, "hl7", {"withheld": withheld})
    carried = None
    if carried_files:
        carried = leak_gate.carried_parts(settings, carried_files, plan.computed)
    scan = yield from leak_gate.publish_if_clean(
        context, settings, publication, HL7_LEAK_CHECK, [deid_key(t) for t in schemas], list(schemas),
        lambda: publication.commit(schemas), carried=carried, merged_index=merged_index, keep_cell_texts=cell_texts.CACHE_FOLDER,
    )
    parts = {name: {"digest": plan.digests[name], "counts": by_part.get(name, {})} for name in plan.digests}
    record.save(basis, decision, outputs, context.run.run_id,
                {"counts": counts, "withheld": withheld, "check": scan, "parts": parts})
    yield from selected_results(context, _hl7_results(settings, schemas, counts, withheld, key.key_id))


def _hl7_results(settings, schemas, counts, withheld, key_id) -> list[dg.MaterializeResult]:
    deid = settings.zone("deid")
    return [
        _materialized(
            deid_key(table), deid.child(table), schema, counts.get(table, 0), _PREVIEW_COLUMN[table], key_id, settings,
            {"values withheld": dg.MetadataValue.md(withheld_markdown([r for r in withheld if r["table"] == table]))},
        )
        for table, schema in schemas.items()
    ]


def withheld_markdown(rows: list[dict]) -> str:
    """Values withheld per column and reason: counts only."""
    if not rows:
        return "none"
    lines = ["| column | reason | values withheld |", "| --- | --- | ---: |"]
    lines += [f"| {row['column']} | {row['reason']} | {row['values']:,} |" for row in rows]
    return "\n".join(lines)


def record_privacy(settings, step: str, summary: dict) -> None:
    """What a step withheld or kept out, as counts, for `deid/reports/privacy.html`."""
    privacy_record(settings, step).write_bytes_atomically(json.dumps(summary).encode())


def privacy_record(settings, step: str):
    return settings.manifests.child(PRIVACY_FOLDER, f"{step}.json")


def _dicom_export_spec(key: dg.AssetKey, deps: list[str], group: str, kinds: set[str]) -> dg.AssetSpec:
    return table_spec(key, deps, group, versions.DICOM_DEID, {"dicom", *kinds}, _DESCRIPTIONS[key.path[-1]])


@publishing_step(
    "dicom_deidentified_export",
    [
        # hl7_messages too: a patient 90+ in HL7 loses the PatientAge of their images. And after the
        # HL7 de-identification: the leak check tolerates the vocabulary that one publishes.
        _dicom_export_spec(
            deid_key(t), ["dicom_images", "dicom_thumbnails", "hl7_messages", deid_key("hl7_messages")], groups.DEID, {"parquet"}
        )
        for t in ("dicom_images", "dicom_thumbnails")
    ]
    + [
        _dicom_export_spec(deid_key(DEID_FILES_ASSET), ["dicom_images"], groups.DEID, set()),
        _dicom_export_spec(dg.AssetKey("dicom_deid_excluded"), ["dicom_images"], groups.PHI, {"parquet"}),
    ],
    DICOM_LEAK_CHECK,
    "deid/dicom_* and deid/dicom/",
)
def dicom_deidentified_export(
    context: dg.AssetExecutionContext, pipeline: PipelineConfig, ray_engine: RayResource, privacy: PrivacyResource
):
    settings = pipeline.settings()
    ring = privacy.key_ring(settings, context.log)
    key = ring.current
    phi, deid = settings.zone("phi"), settings.zone("deid")
    schemas = stamped(DICOM_EXPORT_TABLES, settings.deid_profile, key.key_id, context.run.run_id)
    deid_publication = recovered_publication(context, deid)
    phi_publication = recovered_publication(context, phi)
    deid_tables = {t: s for t, s in schemas.items() if t != "dicom_deid_excluded"}
    exported = [deid_key(t) for t in (*deid_tables, DEID_FILES_ASSET)]
    # The PHI DICOM tables (thumbnails too) and the HL7 ones (old patients, the leak check's identifiers).
    inputs = leak_gate.leak_check_inputs(settings) | {"phi/dicom_thumbnails": phi.child("dicom_thumbnails")}
    basis = StepBasis(
        {**key_settings(ring, settings), "vocabulary threshold": settings.vocabulary_min_patients,
         "patient id scope": settings.patient_id_scope},
        inputs,
    )
    outputs = {f"deid/{t}": deid.child(t) for t in (*deid_tables, DEID_FILES)} | {
        "phi/dicom_deid_excluded": phi.child("dicom_deid_excluded"), "privacy record": privacy_record(settings, "dicom"),
    }
    record, decision = carry_over.decide(context, settings, "dicom_deidentified_export", basis, outputs)
    if decision.carried is not None:
        yield from leak_gate.carried_over_checks(
            context, DICOM_LEAK_CHECK, exported, decision.carried.details["check"], decision.carried.run_id
        )
        results = _dicom_results(settings, schemas, deid_tables, decision.carried.details["counts"], key.key_id)
        yield from selected_results(context, carry_over.marked(results, decision.carried))
        return
    # Who is 90+ (HL7 and DICOM) and the DICOM vocabulary: from the parts' kept census rows.
    census, hl7_digests = deid_jobs.Census({}, {}), {}  # no image, nothing to ask (a site without DICOM)
    with staging(context, settings, ray_engine, phi_read="census for the DICOM export", key_id=key.key_id):
        if phi_part_groups(phi, ["dicom_images"], {}):
            census, hl7_digests = dicom_carry.export_census(phi, settings.vocabulary_min_patients, settings.patient_id_scope)
        now = dicom_carry.basis_of(phi, census, hl7_digests, decision.inputs_seen, settings.patient_id_scope)
    earlier = decision.previous
    plan = dicom_carry.plan_export(earlier.details if earlier else None, now, dicom_carry.load_published(phi))
    if plan.keep:
        # Only HL7 parts were added, and they leave every image's export as it was: keep it whole.
        roots = [deid.child(t) for t in (*deid_tables, DEID_FILES)]
        findings = leak_gate.rescan_published(
            context, settings, DICOM_LEAK_CHECK, roots, plan.hl7_parts_read, cell_texts.DICOM_FOLDER
        )
        if not findings:
            context.log.info(
                f"dicom_deidentified_export: the export of run {earlier.run_id} carried over: the new data is "
                f"{len(plan.hl7_parts_read):,} HL7 part(s) that change no DICOM patient's 90+ status, and the "
                "published files hold none of their identifiers"
            )
            record.save(basis, decision, outputs, earlier.run_id, {**earlier.details, **now.details(_counts_by_part(earlier))})
            searched = {"searched for the new HL7 parts' identifiers by run": dg.MetadataValue.text(context.run.run_id)}
            yield from leak_gate.carried_over_checks(
                context, DICOM_LEAK_CHECK, exported, earlier.details["check"], earlier.run_id, searched
            )
            results = _dicom_results(settings, schemas, deid_tables, earlier.details["counts"], key.key_id)
            yield from selected_results(context, carry_over.marked(results, earlier))
            return
        plan = dicom_carry.ExportPlan(False, [], None, [], f"every image: the published files hold {len(findings):,} "
                                      "identifier(s) of the new HL7 parts")
    if earlier is not None:
        context.log.info(
            f"dicom_deidentified_export: {len(plan.carried):,} part(s) carried over, "
            f"{len(plan.computed) if plan.computed is not None else len(now.dicom_parts):,} exported ({plan.why})"
        )
    targets = {t: deid_publication.staged(t) for t in deid_tables} | {"dicom_deid_excluded": phi_publication.staged("dicom_deid_excluded")}
    by_part = {name: dict(counts) for name, counts in _counts_by_part(earlier).items() if name in plan.carried}
    with staging(
        context, settings, ray_engine, deid_publication, phi_publication,
        phi_read="DICOM images to the de-identified zone", key_id=key.key_id,
    ):
        merged_index = plan.computed is None or leak_gate.merge_index_for(len(plan.computed), len(plan.carried))
        leak_gate.prepare_identifier_index(context.run.run_id, settings, merged_index)  # while the Ray jobs below run
        files = deid_publication.staged(DEID_FILES)
        files.makedirs()
        carried_files = census_parts.stage_carried(deid, deid_publication, deid_tables, plan.carried)
        carried_files |= dicom_carry.stage_carried(deid, DEID_FILES, deid_publication, plan.carried)
        census_parts.stage_carried(phi, phi_publication, ["dicom_deid_excluded"], plan.carried)
        deid_jobs.export_dicom(
            phi, settings.dicom_source.filesystem, files, targets, schemas, key, settings.deid_profile,
            progress_logger(context, "DICOM export"), census, settings.patient_id_scope,
            parts=plan.computed, by_part=by_part,
        )
        phi_publication.commit({"dicom_deid_excluded": schemas["dicom_deid_excluded"]})
    counts = dict(sum((Counter(part) for part in by_part.values()), Counter()) + Counter(files=len(now.dicom_parts)))
    dicom_carry.save_published(phi, now)
    restrict_to_owner(phi)
    excluded = phi.child("dicom_deid_excluded")
    excluded_reasons = value_counts(excluded, "reason", preview_cache(settings)) if excluded.exists() else {}
    record_privacy(settings, "dicom", {"excluded_images": [{"reason": r, "images": n} for r, n in excluded_reasons.items()]})
    carried = leak_gate.carried_parts(settings, carried_files, plan.hl7_parts_read) if carried_files else None
    scan = yield from leak_gate.publish_if_clean(
        context, settings, deid_publication, DICOM_LEAK_CHECK, exported, [*deid_tables, DEID_FILES],
        lambda: deid_publication.commit(deid_tables, folders=[DEID_FILES]), carried=carried, merged_index=merged_index,
        keep_cell_texts=cell_texts.DICOM_FOLDER,
    )
    record.save(basis, decision, outputs, context.run.run_id, {"counts": counts, "check": scan, **now.details(by_part)})
    yield from selected_results(context, _dicom_results(settings, schemas, deid_tables, counts, key.key_id))


def _counts_by_part(earlier) -> dict[str, dict[str, int]]:
    """Each DICOM part's rows as the step's record keeps them (none when there is no record)."""
    if earlier is None:
        return {}
    return {name: part.get("counts", {}) for name, part in earlier.details.get("dicom parts", {}).items()}


def _dicom_results(settings, schemas, deid_tables, counts, key_id) -> list[dg.MaterializeResult]:
    phi, deid = settings.zone("phi"), settings.zone("deid")
    excluded = phi.child("dicom_deid_excluded")
    excluded_reasons = value_counts(excluded, "reason", preview_cache(settings)) if excluded.exists() else {}
    kept_out = count_preview(excluded, "reason", cache=preview_cache(settings)) if excluded_reasons else dg.MetadataValue.md("none")
    results = [
        _materialized(
            deid_key(table), deid.child(table), schema, counts.get(table, 0), _PREVIEW_COLUMN[table], key_id, settings,
            {"images kept out": kept_out},
        )
        for table, schema in deid_tables.items()
    ]
    results.append(dg.MaterializeResult(
        asset_key=deid_key(DEID_FILES_ASSET),
        metadata={"files": counts.get("dicom_images", 0), "dagster/uri": deid.child(DEID_FILES).uri, "key id": key_id},
    ))
    results.append(dg.MaterializeResult(
        asset_key="dicom_deid_excluded",
        metadata={
            **table_metadata(excluded, schemas["dicom_deid_excluded"], counts.get("dicom_deid_excluded", 0)),
            "preview": count_preview(excluded, "reason", cache=preview_cache(settings)),
        },
    ))
    return results


def progress_logger(context: dg.AssetExecutionContext, what: str):
    def report(counts: dict, elapsed_s: float) -> None:
        context.log.info(f"{what}: {counts.get('files', 0):,} part groups done in {elapsed_s:,.1f} s")

    return report


def _materialized(asset_key, location, schema, rows, preview_column, key_id, settings, extra=None) -> dg.MaterializeResult:
    return dg.MaterializeResult(
        asset_key=asset_key,
        metadata={
            **(extra or {}),
            **table_metadata(location, schema, rows),
            "preview": count_preview(location, preview_column, cache=preview_cache(settings)),
            "de-identification profile": settings.deid_profile,
            "key id": key_id,
        },
    )

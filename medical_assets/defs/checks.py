"""Asset checks. The leak check blocks: if any identifier seen in the PHI zone appears in the
de-identified zone, the run fails before anything downstream reads the leak."""

import dagster as dg

from medical_assets.defs.audit import audited_phi_read
from medical_assets.defs.deidentified import DEID_FILES, deid_key
from medical_assets.defs.resources import PipelineConfig
from medical_assets.privacy.leaks import LeakScanner, collect_identifiers
from medical_assets.storage import read_table

# PHI tables the identifiers come from (absent ones are skipped: a site may have no DICOM).
_IDENTIFIER_SOURCES = ("hl7_messages", "hl7_encounters", "hl7_lab_results", "hl7_pharmacy_orders", "dicom_images")


def _leak_check(name: str, asset: str, scanned: list[str], also_after: list[str]):
    @dg.asset_check(
        name=name,
        asset=deid_key(asset),
        additional_deps=[deid_key(a) for a in also_after],
        blocking=True,
        description=(
            "Fails if any identifier of the PHI zone (names, IDs, phone numbers, SSNs, street lines, birth dates, "
            f"original DICOM UIDs) appears anywhere in deid/{{{', '.join(scanned)}}}: Parquet values and metadata, "
            "DICOM elements, any other file. Findings name the file and column or tag, never the value."
        ),
    )
    def leak_check(context: dg.AssetCheckExecutionContext, pipeline: PipelineConfig) -> dg.AssetCheckResult:
        settings = pipeline.settings()
        phi, deid = settings.zone("phi"), settings.zone("deid")
        with audited_phi_read(context, settings, f"leak check of deid/{asset}", None):
            tables = {t: read_table(phi.child(t)) for t in _IDENTIFIER_SOURCES if phi.child(t).exists()}
            identifiers = collect_identifiers(tables)
            if settings.deid_profile == "date_shift":
                # Shifted dates are meant to look like dates, and one will often equal another
                # patient's real birth date: the shift, not this check, protects them.
                identifiers = {value: kind for value, kind in identifiers.items() if kind != "patient_birth_date"}
            scanner = LeakScanner(identifiers)
            findings = [finding for folder in scanned for finding in scanner.scan_tree(deid.child(folder))]
        lines = ["| where | identifier kind | occurrences |", "| --- | --- | ---: |"]
        lines += [f"| {f.where} | {f.kind} | {f.count:,} |" for f in findings[:50]]
        return dg.AssetCheckResult(
            passed=not findings,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={
                "identifiers checked": len(identifiers),
                "de-identification profile": settings.deid_profile,
                "findings": len(findings),
                "where": dg.MetadataValue.md("\n".join(lines) if findings else "no identifier found"),
            },
        )

    return leak_check


hl7_deid_leak_check = _leak_check(
    "no_identifiers_leaked_hl7",
    "hl7_messages",
    ["hl7_messages", "hl7_lab_results", "hl7_pharmacy_orders", "hl7_encounters"],
    ["hl7_lab_results", "hl7_pharmacy_orders", "hl7_encounters"],
)
dicom_deid_leak_check = _leak_check(
    "no_identifiers_leaked_dicom",
    "dicom_images",
    ["dicom_images", "dicom_thumbnails", DEID_FILES],
    ["dicom_thumbnails", "dicom_files"],
)

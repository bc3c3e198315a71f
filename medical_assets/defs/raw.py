"""Landing assets: the synthetic demo corpora and the manifests of the files to read, one of each per kind."""

from collections.abc import Callable

import dagster as dg

from medical_assets.config import DICOM_SOURCE_VAR, HL7_SOURCE_VAR
from medical_assets.defs import groups, versions
from medical_assets.defs.resources import PipelineConfig, RayResource
from medical_assets.dicom import is_dicom_candidate
from medical_assets.engine import jobs
from medical_assets.landing import changed_files, known_checksums, manifest_table
from medical_assets.sources.arrivals import dicom_arrivals, hl7_arrivals
from medical_assets.sources.folder import DICOM_EXTENSIONS, HL7_EXTENSIONS, LandingFile, list_landing_files
from medical_assets.storage import Location, read_table, write_table_atomically
from medical_assets.synthetic.dicom import DicomCorpusSettings
from medical_assets.synthetic.hl7 import HL7CorpusSettings

HL7_MANIFEST = ("hl7_landing", "manifest.parquet")
DICOM_MANIFEST = ("dicom_landing", "manifest.parquet")
_SOURCE_VARS = {"hl7": HL7_SOURCE_VAR, "dicom": DICOM_SOURCE_VAR}


def _synthetic_files_asset(kind: str, description: str, generate: Callable, counted: Callable[[object], dict]):
    """The synthetic corpus of `kind`, written into its landing folder unless the user named a source.
    `generate(settings)` runs the job; `counted(settings)` says what the corpus holds."""

    @dg.asset(
        name=f"synthetic_{kind}_files",
        group_name=groups.LANDING,
        owners=groups.OWNERS,
        code_version=versions.SYNTHETIC,
        kinds={"ray", kind},
        pool=groups.RAY_POOL,
        description=f"{description} Deterministic; skipped when {_SOURCE_VARS[kind]} is set.",
    )
    def synthetic_files(context: dg.AssetExecutionContext, pipeline: PipelineConfig, ray_engine: RayResource) -> dg.MaterializeResult:
        settings = pipeline.settings()
        if settings.source_is_external(kind):
            context.log.info(f"{_SOURCE_VARS[kind]} is set: reading real {kind.upper()} from there, generating nothing")
            return dg.MaterializeResult(metadata={"skipped": f"{_SOURCE_VARS[kind]} is set"})
        with ray_engine.transient_failures_retried():
            result = generate(settings)
        counts = {"files": result.files, **counted(settings)}
        context.log.info(
            f"{'Generated' if result.generated else 'Kept the existing'} synthetic {kind.upper()} corpus: "
            + ", ".join(f"{count:,} {name}" for name, count in counts.items())
        )
        return dg.MaterializeResult(
            metadata={"generated": result.generated, **counts, "landing folder": dg.MetadataValue.path(settings.source(kind).uri)}
        )

    return synthetic_files


def _landing_manifest_asset(kind: str, upstream, description: str, extensions: tuple, accept_without_extension, manifest: tuple):
    """Path, size, modification time and SHA-256 of every landing file of `kind`."""

    @dg.asset(
        name=f"{kind}_landing_manifest",
        deps=[upstream],
        group_name=groups.LANDING,
        owners=groups.OWNERS,
        kinds={"ray", "parquet", kind},
        pool=groups.RAY_POOL,
        description=description,
    )
    def landing_manifest(context: dg.AssetExecutionContext, pipeline: PipelineConfig, ray_engine: RayResource) -> dg.MaterializeResult:
        settings = pipeline.readable_source(kind)
        source = settings.source(kind)
        files = list_landing_files(source, extensions, accept_without_extension=accept_without_extension)
        return _publish_manifest(context, ray_engine, kind, source, files, settings.manifests.child(*manifest))

    return landing_manifest


def _publish_manifest(
    context: dg.AssetExecutionContext, ray_engine: RayResource, kind: str, source: Location, files: list[LandingFile], target: Location
) -> dg.MaterializeResult:
    # A file whose path, size and modification time are unchanged keeps its checksum: a nightly run
    # reads only the files that are new or touched.
    previous = read_table(target) if target.exists() else None
    checksums = known_checksums(files, previous, changed_files(files, previous))
    to_read = [f for f in files if f.path not in checksums]
    if to_read:
        with ray_engine.transient_failures_retried():
            checksums |= jobs.checksum_files(to_read, source.filesystem)
    write_table_atomically(manifest_table(files, checksums), target)
    total_bytes = sum(f.size_bytes for f in files)
    context.log.info(
        f"{len(files):,} files, {total_bytes:,} bytes, in the landing folder; {len(to_read):,} new or touched, checksummed"
    )
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(files),
            "total bytes": total_bytes,
            "dagster/uri": target.uri,
            **_arrivals_metadata(context, kind, source, to_read),
        }
    )


def _arrivals_metadata(context: dg.AssetExecutionContext, kind: str, source: Location, new: list[LandingFile]) -> dict:
    """What the live listeners delivered since the last manifest: counts by listener and sending system."""
    if kind == "hl7":
        arrived = hl7_arrivals(source, new)
        if not arrived:
            return {}
        for listener, counts in arrived.items():
            context.log.info(
                f"MLLP listener {listener!r}: {counts['files']:,} new segment files, {counts['messages']:,} messages "
                f"from {len(counts['senders']):,} sending systems"
            )
        return {
            "arrived by MLLP listener": dg.MetadataValue.json(arrived),
            "messages by MLLP": sum(counts["messages"] for counts in arrived.values()),
        }
    senders = dicom_arrivals(new)
    if not senders:
        return {}
    context.log.info(f"DICOM storage service: {sum(senders.values()):,} new instances from {len(senders):,} calling AE titles")
    return {
        "arrived by DICOM storage service": dg.MetadataValue.json({"instances by calling AE title": senders}),
        "instances by C-STORE": sum(senders.values()),
    }


synthetic_hl7_files = _synthetic_files_asset(
    "hl7",
    "Synthetic, realistic HL7 v2 messages (ADT^A01, ORU^R01, RDE^O11, ADT^A03) written into the HL7 landing folder by a Ray job.",
    lambda settings: jobs.generate_synthetic_hl7(
        HL7CorpusSettings(total_messages=settings.synthetic_hl7_messages, patients=settings.synthetic_hl7_patients),
        settings.hl7_source,
    ),
    lambda settings: {"messages": settings.synthetic_hl7_messages},
)
synthetic_dicom_files = _synthetic_files_asset(
    "dicom",
    "Synthetic DICOM studies (CT, MR, CR/DX, US; uncompressed, deflated and RLE; multi-frame and RGB) written with "
    "pydicom into the DICOM landing folder by a Ray job.",
    lambda settings: jobs.generate_synthetic_dicom(DicomCorpusSettings(total_files=settings.synthetic_dicom_files), settings.dicom_source),
    lambda settings: {},
)
hl7_landing_manifest = _landing_manifest_asset(
    "hl7", synthetic_hl7_files,
    "Manifest of the HL7 landing files (path, size, modification time, SHA-256), one row per file.",
    HL7_EXTENSIONS, None, HL7_MANIFEST,
)
dicom_landing_manifest = _landing_manifest_asset(
    "dicom", synthetic_dicom_files,
    "Manifest of the DICOM landing files (.dcm, .dicom, and files of any name with the DICM preamble): "
    "path, size, modification time, SHA-256.",
    DICOM_EXTENSIONS, is_dicom_candidate, DICOM_MANIFEST,
)

"""Landing assets: the synthetic demo corpora and the manifests of the files to read."""

import dagster as dg

from medical_assets.config import DICOM_SOURCE_VAR, HL7_SOURCE_VAR
from medical_assets.defs import groups, versions
from medical_assets.defs.resources import PipelineConfig, RayResource
from medical_assets.dicom import is_dicom_candidate
from medical_assets.engine import jobs
from medical_assets.landing import changed_files, known_checksums, manifest_table
from medical_assets.sources.folder import DICOM_EXTENSIONS, HL7_EXTENSIONS, LandingFile, list_landing_files
from medical_assets.storage import Location, read_table, write_table_atomically
from medical_assets.synthetic.dicom import DicomCorpusSettings
from medical_assets.synthetic.hl7 import HL7CorpusSettings

HL7_MANIFEST = ("hl7_landing", "manifest.parquet")
DICOM_MANIFEST = ("dicom_landing", "manifest.parquet")


@dg.asset(
    group_name=groups.LANDING,
    owners=groups.OWNERS,
    code_version=versions.SYNTHETIC,
    kinds={"ray", "hl7"},
    pool=groups.RAY_POOL,
    description=(
        "Synthetic, realistic HL7 v2 messages (ADT^A01, ORU^R01, RDE^O11, ADT^A03) written into the HL7 "
        "landing folder by a Ray job. Deterministic; skipped when MEDICAL_ASSETS_HL7_SOURCE is set."
    ),
)
def synthetic_hl7_files(
    context: dg.AssetExecutionContext, pipeline: PipelineConfig, ray_engine: RayResource
) -> dg.MaterializeResult:
    settings = pipeline.settings()
    if settings.hl7_source_is_external:
        context.log.info(f"{HL7_SOURCE_VAR} is set: reading real HL7 from there, generating nothing")
        return dg.MaterializeResult(metadata={"skipped": f"{HL7_SOURCE_VAR} is set"})
    ray_engine.ensure_started()
    corpus = HL7CorpusSettings(total_messages=settings.synthetic_hl7_messages)
    with ray_engine.transient_failures_retried():
        result = jobs.generate_synthetic_hl7(corpus, settings.hl7_source)
    context.log.info(
        f"{'Generated' if result.generated else 'Kept the existing'} synthetic HL7 corpus: "
        f"{corpus.total_messages:,} messages in {result.files:,} files"
    )
    return dg.MaterializeResult(
        metadata={
            "generated": result.generated,
            "files": result.files,
            "messages": corpus.total_messages,
            "landing folder": dg.MetadataValue.path(settings.hl7_source.uri),
        }
    )


@dg.asset(
    group_name=groups.LANDING,
    owners=groups.OWNERS,
    code_version=versions.SYNTHETIC,
    kinds={"ray", "dicom"},
    pool=groups.RAY_POOL,
    description=(
        "Synthetic DICOM studies (CT, MR, CR/DX, US; uncompressed, deflated and RLE; multi-frame and RGB) "
        "written with pydicom into the DICOM landing folder by a Ray job. Deterministic; skipped when "
        "MEDICAL_ASSETS_DICOM_SOURCE is set."
    ),
)
def synthetic_dicom_files(
    context: dg.AssetExecutionContext, pipeline: PipelineConfig, ray_engine: RayResource
) -> dg.MaterializeResult:
    settings = pipeline.settings()
    if settings.dicom_source_is_external:
        context.log.info(f"{DICOM_SOURCE_VAR} is set: reading real DICOM from there, generating nothing")
        return dg.MaterializeResult(metadata={"skipped": f"{DICOM_SOURCE_VAR} is set"})
    ray_engine.ensure_started()
    with ray_engine.transient_failures_retried():
        result = jobs.generate_synthetic_dicom(
            DicomCorpusSettings(total_files=settings.synthetic_dicom_files), settings.dicom_source
        )
    context.log.info(f"{'Generated' if result.generated else 'Kept the existing'} synthetic DICOM corpus: {result.files:,} files")
    return dg.MaterializeResult(
        metadata={
            "generated": result.generated,
            "files": result.files,
            "landing folder": dg.MetadataValue.path(settings.dicom_source.uri),
        }
    )


@dg.asset(
    deps=[synthetic_hl7_files],
    group_name=groups.LANDING,
    owners=groups.OWNERS,
    kinds={"ray", "parquet", "hl7"},
    pool=groups.RAY_POOL,
    description="Manifest of the HL7 landing files (path, size, modification time, SHA-256), one row per file.",
)
def hl7_landing_manifest(
    context: dg.AssetExecutionContext, pipeline: PipelineConfig, ray_engine: RayResource
) -> dg.MaterializeResult:
    settings = pipeline.readable_hl7_source()
    files = list_landing_files(settings.hl7_source, HL7_EXTENSIONS)
    return _publish_manifest(context, ray_engine, settings.hl7_source, files, settings.manifests.child(*HL7_MANIFEST))


@dg.asset(
    deps=[synthetic_dicom_files],
    group_name=groups.LANDING,
    owners=groups.OWNERS,
    kinds={"ray", "parquet", "dicom"},
    pool=groups.RAY_POOL,
    description=(
        "Manifest of the DICOM landing files (.dcm, .dicom, and files of any name with the DICM preamble): "
        "path, size, modification time, SHA-256."
    ),
)
def dicom_landing_manifest(
    context: dg.AssetExecutionContext, pipeline: PipelineConfig, ray_engine: RayResource
) -> dg.MaterializeResult:
    settings = pipeline.readable_dicom_source()
    files = list_landing_files(settings.dicom_source, DICOM_EXTENSIONS, accept_without_extension=is_dicom_candidate)
    return _publish_manifest(context, ray_engine, settings.dicom_source, files, settings.manifests.child(*DICOM_MANIFEST))


def _publish_manifest(
    context: dg.AssetExecutionContext, ray_engine: RayResource, source: Location, files: list[LandingFile], target: Location
) -> dg.MaterializeResult:
    # A file whose path, size and modification time are unchanged keeps its checksum: a nightly run
    # reads only the files that are new or touched.
    previous = read_table(target) if target.exists() else None
    checksums = known_checksums(files, previous, changed_files(files, previous))
    to_read = [f for f in files if f.path not in checksums]
    if to_read:
        ray_engine.ensure_started()
        with ray_engine.transient_failures_retried():
            checksums |= jobs.checksum_files(to_read, source.filesystem)
    write_table_atomically(manifest_table(files, checksums), target)
    total_bytes = sum(f.size_bytes for f in files)
    context.log.info(
        f"{len(files):,} files, {total_bytes:,} bytes, in the landing folder; {len(to_read):,} new or touched, checksummed"
    )
    return dg.MaterializeResult(
        metadata={"dagster/row_count": len(files), "total bytes": total_bytes, "dagster/uri": target.uri}
    )

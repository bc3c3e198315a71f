"""Landing assets: the synthetic demo corpus and the manifest of the HL7 files to parse."""

import dagster as dg

from medical_assets.config import HL7_EXTENSIONS, HL7_SOURCE_VAR
from medical_assets.defs import groups
from medical_assets.defs.resources import PipelineConfig, RayResource
from medical_assets.engine import jobs
from medical_assets.landing import list_landing_files, manifest_table
from medical_assets.storage import write_table_atomically
from medical_assets.synthetic.hl7 import HL7CorpusSettings


@dg.asset(
    group_name=groups.LANDING,
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
    result = jobs.generate_synthetic_hl7(corpus, settings.hl7_source)
    context.log.info(
        f"{'Generated' if result.generated else 'Kept the existing'} synthetic corpus: "
        f"{result.messages:,} messages in {result.files:,} files"
    )
    return dg.MaterializeResult(
        metadata={
            "generated": result.generated,
            "files": result.files,
            "messages": result.messages,
            "landing folder": dg.MetadataValue.path(settings.hl7_source.uri),
        }
    )


@dg.asset(
    deps=[synthetic_hl7_files],
    group_name=groups.LANDING,
    kinds={"ray", "parquet", "hl7"},
    pool=groups.RAY_POOL,
    description="Manifest of the HL7 landing files (path, size, modification time, SHA-256), one row per file.",
)
def hl7_landing_manifest(
    context: dg.AssetExecutionContext, pipeline: PipelineConfig, ray_engine: RayResource
) -> dg.MaterializeResult:
    settings = pipeline.readable_hl7_source()
    files = list_landing_files(settings.hl7_source, HL7_EXTENSIONS)
    if files:
        ray_engine.ensure_started()
    manifest = manifest_table(files, jobs.checksum_files(files, settings.hl7_source.filesystem))
    target = settings.manifests.child("hl7_landing", "manifest.parquet")
    write_table_atomically(manifest, target)
    total_bytes = sum(f.size_bytes for f in files)
    context.log.info(f"{len(files):,} HL7 files, {total_bytes:,} bytes, in the landing folder")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(files),
            "total bytes": total_bytes,
            "dagster/uri": target.uri,
        }
    )

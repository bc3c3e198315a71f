"""Every column of every table says where it comes from, and a published one how it was treated."""

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from medical_assets.analytics.tables import ANALYTICS_TABLES, MESSAGE_VALIDATION
from medical_assets.columns import catalog_description, column, description_of, source_of
from medical_assets.dicom import tables as dicom_tables
from medical_assets.dicom.export import EXPORT_TABLES as DICOM_EXPORT_TABLES
from medical_assets.hl7 import tables as hl7_tables
from medical_assets.landing import LEDGER_SCHEMA, MANIFEST_SCHEMA
from medical_assets.privacy.declarations import Treatment, declared, treatment_of
from medical_assets.privacy.hl7_deid_tables import DEID_HL7_TABLES

# The de-identified zone's record tables: every column declared with its treatment.
DEID_TABLES = {
    **{f"deid {name}": schema for name, schema in DEID_HL7_TABLES.items()},
    "deid dicom_images": DICOM_EXPORT_TABLES["dicom_images"],
    "deid dicom_thumbnails": DICOM_EXPORT_TABLES["dicom_thumbnails"],
}
# The PHI zone's tables and the pipeline's own bookkeeping: a source, never a treatment.
PHI_TABLES = {
    **{f"phi {name}": schema for name, schema in hl7_tables.TABLES.items()},
    **{f"phi {name}": schema for name, schema in dicom_tables.TABLES.items()},
    "phi dicom_deid_excluded": DICOM_EXPORT_TABLES["dicom_deid_excluded"],
    "landing manifest": MANIFEST_SCHEMA,
    "parse ledger": LEDGER_SCHEMA,
}
ANALYTICS = {f"analytics {name}": schema for name, schema in ANALYTICS_TABLES.items()}
ANALYTICS["analytics message_validation"] = MESSAGE_VALIDATION
EVERY_TABLE = {**DEID_TABLES, **PHI_TABLES, **ANALYTICS}


@pytest.mark.parametrize("schema", [pytest.param(schema, id=name) for name, schema in EVERY_TABLE.items()])
def test_every_column_names_its_source_in_the_catalog(schema):
    assert [field.name for field in schema if not source_of(field)] == []
    # A derived column says how it is derived.
    assert [field.name for field in schema if source_of(field) == "derived" and not description_of(field)] == []
    for field in schema:
        line = catalog_description(field)
        assert line.startswith(source_of(field)) and "\n" not in line, field.name


@pytest.mark.parametrize("schema", [pytest.param(schema, id=name) for name, schema in DEID_TABLES.items()])
def test_every_published_column_is_described_with_its_treatment(schema):
    assert [field.name for field in schema if not description_of(field)] == []
    for field in schema:
        assert catalog_description(field).endswith(f"Treatment: {treatment_of(field).value}."), field.name


@pytest.mark.parametrize("schema", [pytest.param(schema, id=name) for name, schema in PHI_TABLES.items()])
def test_a_phi_column_has_no_treatment(schema):
    assert [field.name for field in schema if b"treatment" in (field.metadata or {})] == []
    assert [field.name for field in schema if "Treatment:" in catalog_description(field)] == []


def test_a_copied_dicom_column_says_what_the_phi_column_says():
    phi = dicom_tables.DICOM_IMAGES.field("modality")
    published = dicom_tables.DEID_DICOM_IMAGES.field("modality")
    assert source_of(published) == source_of(phi) == "(0008,0060) Modality"
    assert description_of(published) == description_of(phi)
    assert treatment_of(published) is Treatment.CODE


def test_the_catalog_line_joins_source_description_and_treatment():
    gender = declared("patient_gender", pa.string(), Treatment.CODE, "PID-8", "Administrative sex.")
    assert catalog_description(gender) == "PID-8: Administrative sex. Treatment: keep as code."
    assert catalog_description(column("patient_city", pa.string(), "PID-11.3")) == "PID-11.3."
    assert catalog_description(column("message_index", pa.int32(), "derived", "0-based position of the message in its file")) == (
        "derived: 0-based position of the message in its file."
    )
    assert catalog_description(pa.field("plain", pa.string())) == ""


def test_a_column_needs_a_source():
    with pytest.raises(ValueError, match="source"):
        column("orphan", pa.string(), "")


def test_metadata_changes_no_name_or_type_and_survives_parquet(tmp_path):
    schema = hl7_tables.HL7_MESSAGES
    assert all(field.equals(pa.field(field.name, field.type)) for field in schema)  # metadata aside
    table = schema.empty_table()
    pq.write_table(table, tmp_path / "messages.parquet")
    read = pq.read_schema(tmp_path / "messages.parquet")
    assert read.equals(schema)
    assert [catalog_description(field) for field in read] == [catalog_description(field) for field in schema]

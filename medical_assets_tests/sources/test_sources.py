"""The registry of sources, the synthetic generators as sources, and what the landing folder counts as data."""

import subprocess
import sys

from medical_assets.dicom import is_dicom_candidate
from medical_assets.sources import SOURCES, Source
from medical_assets.sources.folder import DICOM_EXTENSIONS, HL7_EXTENSIONS, deliver, list_landing_files
from medical_assets.sources.synthetic import SYNTHETIC_DICOM, SYNTHETIC_HL7
from medical_assets.storage import resolve_location
from medical_assets.synthetic import dicom as synthetic_dicom
from medical_assets.synthetic import hl7 as synthetic_hl7


def test_every_source_names_its_kind_and_each_kind_has_a_landing_folder():
    assert all(isinstance(source, Source) and source.description for source in SOURCES)
    assert len({source.name for source in SOURCES}) == len(SOURCES)
    assert {source.kind for source in SOURCES} == {"hl7", "dicom"}
    assert {source.kind for source in SOURCES if source.name.endswith("_landing_folder")} == {"hl7", "dicom"}


def test_a_synthetic_source_describes_its_generator_to_the_job():
    settings = synthetic_hl7.HL7CorpusSettings(total_messages=1_050, messages_per_file=500)
    corpus = SYNTHETIC_HL7.corpus(settings)
    assert (corpus.kind, corpus.file_count, corpus.marker_name) == ("hl7", 3, "_synthetic_hl7_corpus.json")
    assert corpus.render_file is synthetic_hl7.render_file and corpus.file_name(0) == synthetic_hl7.file_name(0)
    assert corpus.fingerprint()["generator"] == "medical_assets.synthetic.hl7"

    dicom = SYNTHETIC_DICOM.corpus(synthetic_dicom.DicomCorpusSettings(total_files=7))
    assert (dicom.kind, dicom.file_count) == ("dicom", 7)
    assert dicom.is_synthetic_file_name(synthetic_dicom.file_name(6)) and not dicom.is_synthetic_file_name("scan.dcm")


def test_the_package_loads_no_generator_or_parser():
    # Every process that unpickles a LandingFile imports the package: it must stay light.
    code = "import sys, medical_assets.sources; print(sorted({'pydicom', 'ray', 'dagster'} & set(sys.modules)))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


def test_the_landing_folder_takes_data_files_by_extension_or_content_and_skips_ours(tmp_path):
    landing = resolve_location(str(tmp_path))
    for name in ("a.HL7", "b.txt", "sub/c.er7", "notes.pdf"):
        deliver(landing, name, b"MSH|")
    (tmp_path / "_synthetic_hl7_corpus.json").write_bytes(b"{}")
    (tmp_path / ".d.hl7.tmp").write_bytes(b"MSH|partial")
    (tmp_path / "_staging").mkdir()
    (tmp_path / "_staging" / "e.hl7").write_bytes(b"MSH|")
    assert [f.relative_path for f in list_landing_files(landing, HL7_EXTENSIONS)] == ["a.HL7", "b.txt", "sub/c.er7"]

    deliver(landing, "1.2.840.10008.1", bytes(128) + b"DICM" + bytes(16))
    deliver(landing, "IM0001", bytes(132))
    deliver(landing, "scan.dcm", b"")
    found = list_landing_files(landing, DICOM_EXTENSIONS, accept_without_extension=is_dicom_candidate)
    assert [f.relative_path for f in found] == ["1.2.840.10008.1", "scan.dcm"]

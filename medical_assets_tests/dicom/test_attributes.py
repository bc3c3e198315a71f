"""The DICOM allow-list: what is not declared does not leave, at any depth, and nothing Annex E says to
remove, empty or replace is declared to be kept as it is."""

import secrets
import warnings
from io import BytesIO

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from medical_assets.dicom.annex_e import annex_e_action
from medical_assets.dicom.attributes import ALLOWED_ATTRIBUTES, ALLOWED_TAGS, KEPT_AS_WRITTEN, Treatment
from medical_assets.dicom.deidentify import deidentify_dataset, deidentify_dicom_bytes
from medical_assets.privacy.keys import parse_key_ring
from medical_assets.privacy.pseudonyms import Pseudonymizer

MARKER = "PLANTED"
# Vocabulary-only text may stay under Annex E's Clean Descriptors Option, a capped age under its
# Retain Patient Characteristics Option; nothing else the table says to remove (X) is declared.
OPTIONS_FOR_REMOVED = {Treatment.VOCABULARY, Treatment.AGE}


@pytest.fixture(scope="module")
def pseudonymizer() -> Pseudonymizer:
    return Pseudonymizer(parse_key_ring(secrets.token_urlsafe(32)).current)


def test_nothing_annex_e_lists_is_declared_kept_as_written():
    listed = {keyword: annex_e_action(Tag(keyword)) for keyword in ALLOWED_ATTRIBUTES}
    kept = [k for k, action in listed.items() if action and ALLOWED_ATTRIBUTES[k] in KEPT_AS_WRITTEN]
    assert kept == []
    removed = [k for k, action in listed.items() if action == "X" and ALLOWED_ATTRIBUTES[k] not in OPTIONS_FOR_REMOVED]
    assert removed == []


def test_every_declaration_is_a_public_dicom_attribute_with_a_fitting_vr():
    for tag, treatment in ALLOWED_TAGS.items():
        tag = Tag(tag)
        assert not tag.is_private and tag.element != 0 and not 0x6000 <= tag.group <= 0x60FF
        vr = dictionary_VR(tag)
        if treatment is Treatment.SEQUENCE:
            assert vr == "SQ", keyword_for_tag(tag)
        if treatment in (Treatment.CLASS_UID, Treatment.NEW_UID):
            assert vr == "UI", keyword_for_tag(tag)


def _item(**attributes) -> Dataset:
    item = Dataset()
    for keyword, value in attributes.items():
        setattr(item, keyword, value)
    return item


def _sr_content() -> list[Dataset]:
    """An SR content tree whose text item names the patient, as report templates do."""
    concept = _item(CodeValue="121071", CodingSchemeDesignator="DCM", CodeMeaning=f"Finding {MARKER}")
    text = _item(RelationshipType="CONTAINS", ValueType="TEXT", TextValue=f"Mr {MARKER}FAMILY, seen 2024-01-31")
    text.ConceptNameCodeSequence = [concept]
    return [text]


def _hidden_text_file() -> bytes:
    """pydicom's CT with text in every place an Annex E table does not list, at the top level and
    inside sequences the allow-list keeps (so a kept sequence must not carry them out)."""
    dataset = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    dataset.ContentSequence = _sr_content()
    dataset.ScheduledProcedureStepSequence = [
        _item(CommentsOnTheScheduledProcedureStep=f"Patient {MARKER}FAMILY is claustrophobic", Modality="CT")
    ]
    dataset.ProcedureCodeSequence = [
        _item(CodeValue="CTCHEST", CodingSchemeDesignator="L", CodeMeaning=f"CT chest for {MARKER}FAMILY")
    ]
    dataset.RTPlanLabel = f"{MARKER} plan"
    dataset.StructureSetLabel = f"{MARKER} structures"
    dataset.StructureSetROISequence = [_item(ROINumber=1, ROIName=f"{MARKER} tumour")]
    dataset.add_new(0x00209999, "LO", f"{MARKER} in a made-up public tag")  # in no dictionary
    dataset.private_block(0x0029, f"{MARKER} CREATOR", create=True).add_new(0x01, "LO", f"{MARKER} private")
    dataset.SeriesDescription = f"Chest {MARKER}FAMILY"
    dataset.StudyDescription = "CT CHEST"
    # The same text inside an item of a sequence the allow-list keeps.
    reference = _item(ReferencedSOPClassUID=dataset.SOPClassUID, ReferencedSOPInstanceUID="1.2.3.4.5")
    reference.TextValue = f"{MARKER} nested text"
    reference.ROIName = f"{MARKER} nested ROI"
    reference.ContentSequence = _sr_content()
    reference.add_new(0x00209999, "LO", f"{MARKER} nested made-up")
    reference.private_block(0x0029, f"{MARKER} CREATOR", create=True).add_new(0x01, "LO", f"{MARKER} nested")
    dataset.ReferencedImageSequence = [reference]
    buffer = BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pydicom.dcmwrite(buffer, dataset, enforce_file_format=True)
    return buffer.getvalue()


def test_text_no_table_lists_is_gone_at_every_depth(pseudonymizer):
    """Attack: the Annex E table lists no TextValue, CommentsOnTheScheduledProcedureStep, CodeMeaning,
    RTPlanLabel, StructureSetLabel, ROIName or made-up tag, so a table-driven cleaner keeps them and
    the patient's name leaves in them. Under the allow-list none of them is declared, and none survives."""
    planted = _hidden_text_file()
    assert planted.count(MARKER.encode()) >= 12
    output = deidentify_dicom_bytes(planted, pseudonymizer)
    assert MARKER.encode() not in output
    result = pydicom.dcmread(BytesIO(output))
    del result.DeidentificationMethodCodeSequence  # written afterwards, with our own code meanings
    keywords = {element.keyword for element in result.iterall()}
    for gone in ("TextValue", "CommentsOnTheScheduledProcedureStep", "CodeMeaning", "RTPlanLabel",
                 "StructureSetLabel", "ROIName", "ContentSequence", "ScheduledProcedureStepSequence",
                 "SeriesDescription", "StudyDescription"):  # fmt: skip
        assert gone not in keywords, gone
    assert [element.tag for element in result.iterall() if element.tag.is_private or not element.keyword] == []
    assert Tag(0x00209999) not in result and Tag(0x00209999) not in result.ReferencedImageSequence[0]
    # What the allow-list declares stays: the kept reference (its UID replaced) and the procedure code.
    assert result.ReferencedImageSequence[0].ReferencedSOPInstanceUID == pseudonymizer.uid("1.2.3.4.5")
    assert result.ProcedureCodeSequence[0].CodeValue == "CTCHEST"


def test_a_description_survives_only_when_the_vocabulary_allows_it(pseudonymizer):
    """Attack: a technologist types the patient's name into Series Description; a cleaner that keeps
    descriptions publishes it. Only a value in the caller's vocabulary is kept."""
    planted = _hidden_text_file()
    vocabulary = {"StudyDescription": {"CT CHEST"}, "SeriesDescription": {"Chest"}, "CodeMeaning": {"Finding"}}
    result = pydicom.dcmread(BytesIO(deidentify_dicom_bytes(planted, pseudonymizer, vocabulary=vocabulary)))
    assert result.StudyDescription == "CT CHEST"
    assert "SeriesDescription" not in result  # "Chest <name>" is not "Chest"
    assert "CodeMeaning" not in result.ProcedureCodeSequence[0]


def test_pydicoms_rt_files_lose_their_labels_and_roi_names(pseudonymizer):
    """Attack: RT plans and structure sets name the patient in labels and ROI names, which Annex E does not list."""
    for name, keywords in (("rtplan.dcm", ("RTPlanLabel",)), ("rtstruct.dcm", ("StructureSetLabel", "ROIName"))):
        with open(get_testdata_file(name), "rb") as file:
            data = file.read()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            original = pydicom.dcmread(BytesIO(data), force=True)
            assert all(any(e.keyword == k for e in original.iterall()) for k in keywords)
            dataset = pydicom.dcmread(BytesIO(data), force=True)
            deidentify_dataset(dataset, pseudonymizer)
        survivors = {element.keyword for element in dataset.iterall()}
        assert not survivors & set(keywords), name


def test_a_number_attribute_holding_text_is_removed(pseudonymizer):
    """Attack: a number attribute written with a text VR (or a DS holding letters) carries a name."""
    dataset = Dataset()
    dataset.PatientID = "MRN-1"
    dataset.add_new(Tag("SliceThickness"), "LO", f"{MARKER}FAMILY")
    dataset.add_new(Tag("Manufacturer"), "LO", f"{MARKER}, call 555-0199 & ask")  # code syntax refused
    deidentify_dataset(dataset, pseudonymizer)
    assert "SliceThickness" not in dataset and "Manufacturer" not in dataset

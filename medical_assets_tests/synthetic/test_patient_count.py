"""The number of distinct patients of the synthetic corpora: honoured, deterministic, the default unchanged."""

import os

import pytest

from benchmarks.tutorial import corpus_name, tutorial_message, write_corpus
from medical_assets.config import SYNTHETIC_HL7_PATIENTS_VAR, ConfigurationError, load_settings
from medical_assets.sources.synthetic import SYNTHETIC_HL7
from medical_assets.synthetic import hl7 as synthetic_hl7
from medical_assets.synthetic.hl7 import HL7CorpusSettings, render_file, render_message
from medical_assets.synthetic.hl7_patients import PATIENT_POOL_SIZE, pool_patient

SEED = HL7CorpusSettings().seed


def test_visits_are_drawn_from_the_first_patients_of_the_pool():
    settings = HL7CorpusSettings(total_messages=2_000, patients=1_500)
    numbers = corpus_record_numbers(settings)
    visits = settings.total_messages // 4
    # Each visit draws one of `patients` uniformly: the expected number of distinct ones.
    expected = settings.patients * (1 - (1 - 1 / settings.patients) ** visits)
    assert abs(len(set(numbers)) - expected) < 0.1 * expected
    assert set(numbers) <= {pool_patient(SEED, n).medical_record_number for n in range(settings.patients)}


def test_a_small_count_is_never_exceeded():
    numbers = corpus_record_numbers(HL7CorpusSettings(total_messages=2_000, patients=10))
    assert len(set(numbers)) == 10  # 500 visits over 10 patients: every one of them, and no other
    assert len(set(corpus_record_numbers(HL7CorpusSettings(total_messages=400, patients=1)))) == 1


def test_the_four_messages_of_a_visit_share_their_patient():
    numbers = corpus_record_numbers(HL7CorpusSettings(total_messages=400, patients=100_000))
    assert all(len(set(numbers[visit : visit + 4])) == 1 for visit in range(0, len(numbers), 4))
    assert len(set(numbers)) > 95  # 100 visits over 100,000 patients: nearly all distinct


def test_a_counted_corpus_is_deterministic_and_the_count_is_part_of_the_cache_key():
    default, counted = HL7CorpusSettings(total_messages=1_000), HL7CorpusSettings(total_messages=1_000, patients=10)
    clear_caches()
    before = render_file(default, 1)
    counted_bytes = render_file(counted, 1)
    assert render_file(default, 1) == before  # not the counted corpus's visits, cached under the same number
    assert counted_bytes != before
    clear_caches()
    assert render_file(HL7CorpusSettings(total_messages=1_000, patients=10), 1) == counted_bytes


def test_no_count_is_the_default_pool():
    default, explicit = HL7CorpusSettings(total_messages=800), HL7CorpusSettings(total_messages=800, patients=PATIENT_POOL_SIZE)
    assert default.patient_count == PATIENT_POOL_SIZE
    assert render_file(default, 0) == render_file(explicit, 0)


def test_the_fingerprint_changes_with_the_count_so_the_corpus_is_written_again():
    fingerprints = [
        SYNTHETIC_HL7.corpus(HL7CorpusSettings(total_messages=1_000, patients=patients)).fingerprint()
        for patients in (None, 10, 11)
    ]
    assert [f["patients"] for f in fingerprints] == [None, 10, 11]
    assert len({tuple(sorted(f.items())) for f in fingerprints}) == 3


@pytest.mark.parametrize("patients", [0, -5])
def test_a_count_below_one_is_refused(patients):
    with pytest.raises(ValueError, match="patients must be 1 or more"):
        HL7CorpusSettings(patients=patients)


def test_a_pool_of_millions_keeps_record_numbers_unique_and_the_cache_bounded():
    # The seven-digit numbers run out after 9,000,000 patients; the next ones are longer, not repeated.
    around_the_edge = [*range(20), *range(8_999_990, 9_000_010), *range(98_999_990, 99_000_010)]
    numbers = [pool_patient(SEED, n).medical_record_number for n in around_the_edge]
    assert len(set(numbers)) == len(numbers)
    assert numbers[:20] == [pool_patient(SEED, n).medical_record_number for n in range(20)]
    assert {len(n) for n in numbers} == {7, 8, 9}

    settings = HL7CorpusSettings(total_messages=40_000_000, patients=20_000_000)
    for file_index in (0, 40_000, 79_999):
        assert render_file(settings, file_index).count(b"\rPID|") == settings.messages_per_file
    cache = pool_patient.cache_info()
    assert cache.maxsize is not None and cache.currsize <= cache.maxsize <= 65_536


def test_the_environment_sets_the_count():
    assert load_settings({}).synthetic_hl7_patients is None
    assert load_settings({SYNTHETIC_HL7_PATIENTS_VAR: ""}).synthetic_hl7_patients is None
    assert load_settings({SYNTHETIC_HL7_PATIENTS_VAR: "250000"}).synthetic_hl7_patients == 250_000


@pytest.mark.parametrize("value", ["0", "-3", "many"])
def test_a_bad_count_names_the_variable(value):
    with pytest.raises(ConfigurationError, match=SYNTHETIC_HL7_PATIENTS_VAR):
        load_settings({SYNTHETIC_HL7_PATIENTS_VAR: value})


@pytest.mark.parametrize(("patients", "distinct"), [(300, 300), (1_500, 1_500), (100_000, 2_000), (None, 2_000)])
def test_the_tutorial_corpus_has_as_many_patients_as_asked(tmp_path, patients, distinct):
    folder = tmp_path / corpus_name(2_000, patients)
    write_corpus(str(folder), 2_000, messages_per_file=500, patients=patients)
    demographics = {}
    for name in sorted(os.listdir(folder)):
        for line in (folder / name).read_bytes().decode().split("\n"):
            for segment in line.split("\r"):
                if segment.startswith("PID|"):
                    fields = segment.split("|")
                    # One id, one person: the name, birth date, sex, address and SSN come with the id.
                    person = (fields[5], fields[7], fields[8], fields[11], fields[18])
                    assert demographics.setdefault(fields[3], person) == person
    assert len(demographics) == distinct


def test_tutorial_patients_stay_distinct_into_the_millions():
    pid_fields = [tutorial_message(i, None).split("\r")[1].split("|") for i in range(0, 5_000_000, 1_009)]
    for sequence in (3, 5, 11, 18):  # id, name, address, SSN (the tutorial puts it in PID-18)
        assert len({fields[sequence] for fields in pid_fields}) == len(pid_fields)


def test_tutorial_corpora_of_other_shapes_have_other_folders():
    names = {corpus_name(size, patients) for size in (50_000, 500_000) for patients in (None, 10_000, 100_000)}
    assert len(names) == 6
    with pytest.raises(ValueError, match="patients must be 1 or more"):
        write_corpus("unused", 10, patients=0)


def corpus_record_numbers(settings: HL7CorpusSettings) -> list[str]:
    """The medical record number (the MR identifier of PID-3) of every message, in order."""
    return [record_number(render_message(settings, n)) for n in range(settings.total_messages)]


def record_number(message: str) -> str:
    pid = next(segment for segment in message.split("\r") if segment.startswith("PID|"))
    for identifier in pid.split("|")[3].split("~"):
        components = identifier.split("^")
        if components[4] == "MR":
            return components[0]
    raise AssertionError("no MR identifier in PID-3")


def clear_caches() -> None:
    synthetic_hl7._encounter_messages.cache_clear()
    pool_patient.cache_clear()

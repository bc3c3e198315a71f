"""A deterministic synthetic HL7 v2 corpus of hospital feeds, resembling no real person."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import NamedTuple

from medical_assets.synthetic.draws import Draws
from medical_assets.synthetic.hl7_patients import PATIENT_POOL_SIZE, Patient, pool_patient
from medical_assets.synthetic.hl7_reference import (
    ADULT_SERVICES,
    CHILD_SERVICES,
    CHILDBEARING_AGE_SERVICES,
    DISCHARGE_DISPOSITIONS,
    DOCTORS_BY_FACILITY,
    DOSES_PER_DAY,
    LAB_COMMENTS,
    PATIENT_CLASSES,
    ROUTE_NAMES,
    SERVICES,
    Analyte,
    Facility,
    Service,
)
from medical_assets.synthetic.naming import NumberedFileNames

# Raised whenever a seed renders other bytes than before, so that a landing corpus of an older
# version is told apart from the current one. 2: PID-3.4 left out by one feed, a full HD in another.
GENERATOR_VERSION = 2


@dataclass(frozen=True)
class HL7CorpusSettings:
    """How many messages the corpus holds, how many go in one file, the seed that fixes them, and
    how many distinct patients they are about."""

    total_messages: int = 50_000
    messages_per_file: int = 500
    seed: int = 20240101
    # Visits draw their patient from patients 0..patients-1 of the pool; None keeps the pool of
    # PATIENT_POOL_SIZE that the DICOM corpus joins on. For a hospital-shaped history, set it near
    # total_messages / 4: about one patient per visit.
    patients: int | None = None

    def __post_init__(self) -> None:
        if self.total_messages < 0:
            raise ValueError(f"total_messages must be 0 or more, got {self.total_messages}")
        if self.messages_per_file < 1:
            raise ValueError(f"messages_per_file must be 1 or more, got {self.messages_per_file}")
        if self.patients is not None and self.patients < 1:
            raise ValueError(f"patients must be 1 or more (or None for the default pool), got {self.patients}")

    @property
    def patient_count(self) -> int:
        """The number of distinct patients visits are drawn from."""
        return PATIENT_POOL_SIZE if self.patients is None else self.patients

    def file_count(self) -> int:
        return -(-self.total_messages // self.messages_per_file)

    def messages_in_file(self, file_index: int) -> int:
        """Messages in file `file_index`: `messages_per_file`, except a shorter last file."""
        if not 0 <= file_index < self.file_count():
            raise IndexError(
                f"file_index {file_index} is outside 0..{self.file_count() - 1} "
                f"({self.total_messages} messages, {self.messages_per_file} per file)"
            )
        return min(self.messages_per_file, self.total_messages - file_index * self.messages_per_file)


def file_name(file_index: int) -> str:
    """The file's name, zero-padded so that names sort in message order."""
    return _FILE_NAMES.name(file_index)


def is_synthetic_file_name(name: str) -> bool:
    """True for names `file_name` gives, so a new corpus can replace an old one and nothing else."""
    return _FILE_NAMES.is_ours(name)


_FILE_NAMES = NumberedFileNames("adt_lab_pharm_", ".hl7")


def render_file(settings: HL7CorpusSettings, file_index: int) -> bytes:
    """The bytes of one file: its messages back to back, every segment ended by a carriage return."""
    first_message = file_index * settings.messages_per_file
    message_count = settings.messages_in_file(file_index)
    messages = [render_message(settings, n) for n in range(first_message, first_message + message_count)]
    return "".join(messages).encode("utf-8")


def render_message(settings: HL7CorpusSettings, message_number: int) -> str:
    """Message `message_number` (0-based, across files) in ER7, every segment ended by a carriage return.

    It depends only on the seed and the number, so any file renders alone, in any process, to
    the same bytes. Messages come in visits of four (number // 4): the admission (ADT^A01), a lab
    result (ORU^R01), a pharmacy order (RDE^O11) and the discharge (ADT^A03), for a patient drawn
    from a pool of `settings.patient_count`, so one patient recurs across messages, types and
    files. Everything is invented: names from short lists, phone numbers in the 555-0100..0199
    range kept for fiction, SSNs in the never-issued 9xx area, doctors with local IDs only.
    """
    if message_number < 0:
        raise ValueError(f"message_number must be 0 or more, got {message_number}")
    return _encounter_messages(settings.seed, settings.patient_count, message_number // 4)[message_number % 4]


# Admissions start between 2024-01-01 and 2025-12-15 so that the longest stay, and the lab
# results after it, still end in 2025.
_EPOCH = datetime(2024, 1, 1)
_ADMISSION_WINDOW_SECONDS = int((datetime(2025, 12, 15) - _EPOCH).total_seconds())
# Timestamps are the most frequent value: tables of their parts make them cheap.
_DATES = tuple((_EPOCH + timedelta(days=day)).strftime("%Y%m%d") for day in range(800))
_HOURS_MINUTES = tuple(f"{hour:02d}{minute:02d}" for hour in range(24) for minute in range(60))
_SECONDS = tuple(f"{second:02d}" for second in range(60))


def _hl7_datetime(seconds: int) -> str:
    """YYYYMMDDHHMMSS for a moment given in seconds since 2024-01-01 00:00."""
    day, second_of_day = divmod(seconds, 86_400)
    minute_of_day, second = divmod(second_of_day, 60)
    return _DATES[day] + _HOURS_MINUTES[minute_of_day] + _SECONDS[second]


class _Encounter(NamedTuple):
    facility: Facility
    patient: Patient
    service: Service
    attending_doctor: str
    visit_number: str
    admitted_at: int  # seconds since 2024-01-01
    discharged_at: int
    diagnosis: tuple[str, str, str]
    pid: str
    pv1_admitted: str
    pv1_discharged: str


# A file renders its encounters' messages in order, so a small cache saves three of four builds.
@lru_cache(maxsize=256)
def _encounter_messages(seed: int, patient_count: int, encounter_number: int) -> tuple[str, str, str, str]:
    """The four messages of one visit (admission, lab result, pharmacy order, discharge)."""
    rng = Draws(f"{seed}:encounter:{encounter_number}")
    encounter = _encounter(seed, patient_count, encounter_number, rng)
    first_message_number = encounter_number * 4
    admission, lab_result, pharmacy_order, discharge = (
        "\r".join(build(first_message_number + kind, encounter, rng)) + "\r"
        for kind, build in enumerate(_MESSAGE_BUILDERS)
    )
    return admission, lab_result, pharmacy_order, discharge


def _encounter(seed: int, patient_count: int, encounter_number: int, rng: Draws) -> _Encounter:
    patient = pool_patient(seed, rng.below(patient_count))
    facility = patient.facility
    admitted_at = rng.below(_ADMISSION_WINDOW_SECONDS)
    age = _age_on(patient.birth_date, _hl7_datetime(admitted_at))
    service = SERVICES[_service_code(rng, age, patient.gender)]

    patient_class = "I" if service.code == "OB" else rng.weighted(PATIENT_CLASSES)
    if patient_class == "I":
        stay_seconds = rng.between(86_400, 10 * 86_400)
        location = f"{rng.pick(service.units)}^{rng.between(100, 599)}^{rng.pick('AB')}"
        admission_type = {"OB": "L", "SURG": "C"}.get(service.code, "U")
        admit_source = "1"
    elif patient_class == "E":
        stay_seconds = rng.between(2 * 3_600, 12 * 3_600)
        location = f"ED^{rng.between(1, 30):02d}^1"
        admission_type = "E"
        admit_source = "7"
    else:
        stay_seconds = rng.between(3_600, 6 * 3_600)
        location = f"OPC^{rng.between(1, 20)}^"
        admission_type = "R"
        admit_source = "1"
    discharged_at = admitted_at + stay_seconds

    attending_doctor = rng.pick(DOCTORS_BY_FACILITY[facility.name])
    visit_number = f"{facility.assigning_authority}{encounter_number + 1:08d}"
    account_number = f"A{encounter_number + 1:09d}"

    visit_identifier = f"{visit_number}^^^{facility.identifier_issuer}^VN"
    record_identifier = f"{patient.medical_record_number}^^^{facility.identifier_issuer}^MR"
    patient_identifiers = {
        "MR": record_identifier,
        "VN~MR": f"{visit_identifier}~{record_identifier}",
        "MR~VN": f"{record_identifier}~{visit_identifier}",
    }[facility.patient_id_layout]
    pid = _segment(
        "PID",
        {
            1: "1",
            3: patient_identifiers,
            5: patient.name,
            7: patient.birth_date,
            8: patient.gender,
            11: patient.address,
            13: patient.phone,
            16: patient.marital_status,
            18: account_number,
            19: patient.ssn,
        },
    )
    pv1_fields = {
        1: "1",
        2: patient_class,
        3: f"{location}^{facility.name}",
        4: admission_type,
        7: attending_doctor,
        10: service.code,
        14: admit_source,
        17: attending_doctor,
        19: visit_number,
        44: _hl7_datetime(admitted_at),
    }
    pv1_admitted = _segment("PV1", pv1_fields)
    disposition = rng.weighted(DISCHARGE_DISPOSITIONS) if patient_class == "I" else "01"
    pv1_discharged = _segment("PV1", {**pv1_fields, 36: disposition, 45: _hl7_datetime(discharged_at)})
    return _Encounter(
        facility=facility,
        patient=patient,
        service=service,
        attending_doctor=attending_doctor,
        visit_number=visit_number,
        admitted_at=admitted_at,
        discharged_at=discharged_at,
        diagnosis=rng.pick(service.diagnoses),
        pid=pid,
        pv1_admitted=pv1_admitted,
        pv1_discharged=pv1_discharged,
    )


def _age_on(birth_date: str, moment: str) -> int:
    """Age in whole years, from HL7 dates: YYYYMMDD read as numbers differ by 10,000 a year."""
    return (int(moment[:8]) - int(birth_date)) // 10_000


def _service_code(rng: Draws, age: int, gender: str) -> str:
    if age < 18:
        return rng.weighted(CHILD_SERVICES)
    if gender == "F" and age <= 45:
        return rng.weighted(CHILDBEARING_AGE_SERVICES)
    return rng.weighted(ADULT_SERVICES)


def _segment(segment_id: str, fields: dict[int, str]) -> str:
    """One segment from its fields by sequence number; the ones not given stay empty."""
    values = [""] * (max(fields) + 1)
    values[0] = segment_id
    for sequence, value in fields.items():
        values[sequence] = value
    return "|".join(values)


def _message_header(
    encounter: _Encounter, application: str, event: str, structure: str, sent_at: int, message_number: int
) -> str:
    facility = encounter.facility
    message_type = f"{event}^{structure}"  # MSH-9.3, the message structure, exists from 2.3.1 on
    header = (
        f"MSH|^~\\&|{application}|{facility.name}|EMR|{encounter.service.clinic}|{_hl7_datetime(sent_at)}"
        f"||{message_type}|MSG{message_number:08d}|P|{facility.hl7_version}"
    )
    if facility.character_set:
        return f"{header}|||AL|NE|USA|{facility.character_set}"
    return header


def _admission(message_number: int, encounter: _Encounter, rng: Draws) -> list[str]:
    recorded_at = encounter.admitted_at + rng.between(30, 900)
    segments = [
        _message_header(encounter, "ADT", "ADT^A01", "ADT_A01", recorded_at, message_number),
        f"EVN|A01|{_hl7_datetime(recorded_at)}||||{_hl7_datetime(encounter.admitted_at)}",
        encounter.pid,
    ]
    if rng.random() < 0.4:
        segments.append(f"NK1|1|{encounter.patient.next_of_kin}")
    segments.append(encounter.pv1_admitted)
    if rng.random() < 0.5:
        segments.append(f"PV2|||^{encounter.diagnosis[2]}")
    segments.extend(encounter.patient.allergies)
    if rng.random() < 0.7:
        segments.append(_diagnosis(encounter, "A", encounter.admitted_at))
    return segments


def _discharge(message_number: int, encounter: _Encounter, rng: Draws) -> list[str]:
    recorded_at = encounter.discharged_at + rng.between(30, 900)
    segments = [
        _message_header(encounter, "ADT", "ADT^A03", "ADT_A03", recorded_at, message_number),
        f"EVN|A03|{_hl7_datetime(recorded_at)}||||{_hl7_datetime(encounter.discharged_at)}",
        encounter.pid,
        encounter.pv1_discharged,
    ]
    if rng.random() < 0.8:
        segments.append(_diagnosis(encounter, "F", encounter.discharged_at))
    return segments


def _diagnosis(encounter: _Encounter, diagnosis_type: str, diagnosed_at: int) -> str:
    code, name, _ = encounter.diagnosis
    return f"DG1|1|I10|{code}^{name}^I10||{_hl7_datetime(diagnosed_at)}|{diagnosis_type}"


def _lab_result(message_number: int, encounter: _Encounter, rng: Draws) -> list[str]:
    facility = encounter.facility
    stay_seconds = encounter.discharged_at - encounter.admitted_at
    collected_at = encounter.admitted_at + 600 + int(rng.random() * stay_seconds * 0.6)
    resulted_at = collected_at + rng.between(20 * 60, 3 * 3_600)
    segments = [
        _message_header(encounter, "LAB", "ORU^R01", "ORU_R01", resulted_at + rng.between(5, 120), message_number),
        encounter.pid,
    ]
    if rng.random() < 0.75:
        segments.append(encounter.pv1_admitted)
    with_order_control = rng.random() < 0.5
    first_panel = rng.pick(encounter.service.panels)
    panels = [first_panel]
    if rng.random() < 0.15:
        panels.append(rng.pick([p for p in encounter.service.panels if p is not first_panel]))
    collected = _hl7_datetime(collected_at)
    resulted = _hl7_datetime(resulted_at)
    for group, panel in enumerate(panels, start=1):
        placer_order_number = f"ORD{message_number:08d}{group}"
        filler_order_number = f"LAB{message_number:08d}{group}"
        if with_order_control:
            segments.append(
                f"ORC|RE|{placer_order_number}|{filler_order_number}||CM||||{resulted}|||{encounter.attending_doctor}"
            )
        segments.append(
            f"OBR|{group}|{placer_order_number}|{filler_order_number}|{panel.code}^{panel.name}^LN|||{collected}"
            f"|||||||||{encounter.attending_doctor}||||||{resulted}||{panel.section}|F"
        )
        # A run of the panel's analytes, in the order the panel reports them.
        observation_count = rng.between(2, min(6, len(panel.analytes)))
        first = rng.below(len(panel.analytes) - observation_count + 1)
        for set_id, analyte in enumerate(panel.analytes[first : first + observation_count], start=1):
            segments.append(_observation(set_id, analyte, facility, collected, rng))
        if group == 1 and rng.random() < 0.08:
            segments.append(f"NTE|1|L|{rng.pick(LAB_COMMENTS)}")
    return segments


def _observation(set_id: int, analyte: Analyte, facility: Facility, observed: str, rng: Draws) -> str:
    value = max(0.0, rng.gauss(analyte.mean, analyte.sd))
    value_text = format(value, analyte.value_format)
    # The flag is judged on the value as sent, so a receiver can recompute it.
    shown = float(value_text)
    if shown < analyte.low:
        abnormal_flag = "L"
    elif shown > analyte.high:
        abnormal_flag = "H"
    else:
        abnormal_flag = facility.normal_flag
    units = f"{analyte.units}^{analyte.units}^UCUM" if facility.ucum_units else analyte.units
    return (
        f"OBX|{set_id}|NM|{analyte.code}^{analyte.name}^LN||{value_text}|{units}|{analyte.reference_range}"
        f"|{abnormal_flag}|||F|||{observed}"
    )


def _pharmacy_order(message_number: int, encounter: _Encounter, rng: Draws) -> list[str]:
    stay_seconds = encounter.discharged_at - encounter.admitted_at
    ordered_at = encounter.admitted_at + 300 + int(rng.random() * stay_seconds * 0.5)
    segments = [
        _message_header(encounter, "PHARM", "RDE^O11", "RDE_O11", ordered_at + rng.between(5, 300), message_number),
        encounter.pid,
    ]
    if rng.random() < 0.75:
        segments.append(encounter.pv1_admitted)
    drug = rng.pick(encounter.service.drugs)
    days = rng.between(1, 10)
    starts_at = ordered_at + rng.between(0, 3_600)
    ends_at = starts_at + days * 86_400
    give_count = DOSES_PER_DAY[drug.frequency] * days
    dispense_amount = give_count if drug.form == "INJ" else give_count * drug.give_amount
    segments.extend(
        (
            f"ORC|NW|RX{message_number:08d}|||||||{_hl7_datetime(ordered_at)}|||{encounter.attending_doctor}",
            f"RXE|1^{drug.frequency}^^{_hl7_datetime(starts_at)}^{_hl7_datetime(ends_at)}"
            f"|{drug.rxnorm}^{drug.name}^RXNORM|{drug.give_amount}||{drug.give_units}|{drug.form}"
            f"||||{dispense_amount}|{drug.dispense_units}|0|||RX{message_number:08d}",
            f"RXR|{drug.route}^{ROUTE_NAMES[drug.route]}^HL70162",
        )
    )
    return segments


_MESSAGE_BUILDERS = (_admission, _lab_result, _pharmacy_order, _discharge)

"""The tutorial's corpus and its single-thread parser, kept as the baseline we must beat.

The corpus follows the tutorial's four templates (including its defects, such as the SSN in
PID-18): it is what our users measured before. The parser is the tutorial's loop, fed what its
`write_text` produced (one message per line, segments separated by CR) and opened with
newline="" so that universal newlines do not split every segment into a "message".

The tutorial repeats 100,000 patient ids and draws each message's name, birth date, address and
SSN from the message number, so one id carries many people and the identifiers a leak check
must know stay few. Here every patient field comes from the patient: `patients` distinct ids,
each with one set of demographics, which is what grows with a hospital's history.
"""

import os

import pandas as pd

TEMPLATES = {
    "admission": (
        "MSH|^~\\&|ADT|{hospital}|EMR|{clinic}|{timestamp}||ADT^A01|{msg_id}|P|2.5\r"
        "PID|1||{patient_id}||{last_name}^{first_name}^{middle}||{birth_date}|{gender}|||{address}||{phone}|||{marital}||{ssn}\r"
        "PV1|1|{patient_class}|{location}|||{attending_doctor}|||{hospital_service}||||A|||{attending_doctor}|{patient_type}|"
    ),
    "lab_result": (
        "MSH|^~\\&|LAB|{hospital}|EMR|{clinic}|{timestamp}||ORU^R01|{msg_id}|P|2.5\r"
        "PID|1||{patient_id}||{last_name}^{first_name}^{middle}||{birth_date}|{gender}|||{address}||{phone}|||{marital}||{ssn}\r"
        "OBX|1|NM|{test_code}^{test_name}^L||{test_value}|{units}|{reference_range}|{abnormal_flag}|||F\r"
        "OBX|2|NM|{test_code2}^{test_name2}^L||{test_value2}|{units2}|{reference_range2}|{abnormal_flag2}|||F"
    ),
    "pharmacy": (
        "MSH|^~\\&|PHARM|{hospital}|EMR|{clinic}|{timestamp}||RDE^O11|{msg_id}|P|2.5\r"
        "PID|1||{patient_id}||{last_name}^{first_name}^{middle}||{birth_date}|{gender}|||{address}||{phone}|||{marital}||{ssn}\r"
        "RXE|1^1^{timestamp}^{end_date}|{medication}|{quantity}||{form}|{route}|{frequency}|||"
    ),
    "discharge": (
        "MSH|^~\\&|ADT|{hospital}|EMR|{clinic}|{timestamp}||ADT^A03|{msg_id}|P|2.5\r"
        "PID|1||{patient_id}||{last_name}^{first_name}^{middle}||{birth_date}|{gender}|||{address}||{phone}|||{marital}||{ssn}\r"
        "PV1|1|{patient_class}|{location}|||{attending_doctor}|||{hospital_service}||||D|||{attending_doctor}|{patient_type}|"
    ),
}
KINDS = ["admission", "lab_result", "pharmacy", "discharge"]
TUTORIAL_PATIENTS = 100_000  # the tutorial's own count


def tutorial_message(i: int, patients: int | None = TUTORIAL_PATIENTS) -> str:
    """Message `i` about patient i % `patients` (None: a patient of its own for every message)."""
    p = i if patients is None else i % patients
    return TEMPLATES[KINDS[i % 4]].format(
        hospital=["GENERAL_HOSPITAL", "MEDICAL_CENTER", "REGIONAL_CLINIC", "UNIVERSITY_HOSPITAL"][i % 4],
        clinic=["INTERNAL_MED", "CARDIOLOGY", "NEUROLOGY", "ONCOLOGY", "PEDIATRICS"][i % 5],
        timestamp=f"2024{(i % 12) + 1:02d}{(i % 28) + 1:02d}{(i % 24):02d}{(i % 60):02d}00",
        msg_id=str(i + 100000),
        # The tutorial's formats; the mixed radixes keep names, addresses and SSNs distinct per
        # patient into the millions, while birth dates and phone numbers repeat as they do in life.
        patient_id=f"{200000 + p}",
        last_name=f"PATIENT{p % 5000}",
        first_name=f"FNAME{(p // 5000) % 2000}",
        middle=chr(65 + (p % 26)),
        birth_date=f"{1940 + (p % 80)}{(p // 80) % 12 + 1:02d}{(p // 960) % 28 + 1:02d}",
        gender=["M", "F"][p % 2],
        address=f"{p % 9999} MEDICAL BLVD^^CITY{(p // 9999) % 500}^ST^{20000 + (p % 80000)}",
        phone=f"555-{(p % 9000) + 1000}",
        marital=["S", "M", "D", "W"][p % 4],
        ssn=f"{100 + (p % 900)}-{10 + (p // 900) % 90}-{1000 + (p // 81000) % 9000}",
        patient_class=["I", "O", "E"][i % 3],
        location=f"UNIT{i % 50}^{i % 20}^{chr(65 + (i % 26))}",
        attending_doctor=f"DOC{i % 200}",
        hospital_service=["MED", "SURG", "PEDS", "OB", "PSYCH"][i % 5],
        patient_type=["INP", "OUT", "ER"][i % 3],
        test_code=f"TEST{i % 100}",
        test_name=["Glucose", "Cholesterol", "Hemoglobin", "Creatinine"][i % 4],
        test_value=str(50 + (i % 200)),
        units=["mg/dL", "g/dL", "mmol/L"][i % 3],
        reference_range="Normal",
        abnormal_flag=["N", "H", "L"][i % 3],
        test_code2=f"TEST{(i + 1) % 100}",
        test_name2=["Sodium", "Potassium", "Chloride", "CO2"][i % 4],
        test_value2=str(100 + (i % 50)),
        units2="mEq/L",
        reference_range2="Normal",
        abnormal_flag2=["N", "H", "L"][i % 3],
        medication=["ASPIRIN 81MG", "METFORMIN 500MG", "LISINOPRIL 10MG", "ATORVASTATIN 20MG"][i % 4],
        quantity=str(30 + (i % 60)),
        form=["TAB", "CAP", "LIQ"][i % 3],
        route=["PO", "IV", "IM"][i % 3],
        frequency=["QD", "BID", "TID", "QID"][i % 4],
        end_date=f"2024{(i % 12) + 1:02d}{((i + 30) % 28) + 1:02d}{(i % 24):02d}{(i % 60):02d}00",
    )


def corpus_name(total_messages: int, patients: int | None = TUTORIAL_PATIENTS) -> str:
    """The folder name of a corpus: its size and patient count, so corpora of other shapes never mix."""
    return f"tutorial-{total_messages}-patients-{'all' if patients is None else patients}"


def write_corpus(
    folder: str, total_messages: int, messages_per_file: int = 500, patients: int | None = TUTORIAL_PATIENTS,
    first: int = 0,
) -> None:
    """The tutorial's `write_text` layout: one message per line, about `patients` distinct patients
    (None: as many as messages); messages `first` to `total_messages` (a later day: from the end of a history)."""
    if patients is not None and patients < 1:
        raise ValueError(f"patients must be 1 or more (or None for one per message), got {patients}")
    os.makedirs(folder, exist_ok=True)
    for file_index, start in enumerate(range(first, total_messages, messages_per_file)):
        stop = min(start + messages_per_file, total_messages)
        with open(os.path.join(folder, f"tutorial_{file_index:05d}.hl7"), "w", newline="") as out:
            out.write("".join(tutorial_message(i, patients) + "\n" for i in range(start, stop)))


def parse_file_single_thread(file_path: str) -> list[dict]:
    """The tutorial's parser (Stage 2), reading each line as one message."""
    parsed_messages = []
    with open(file_path, newline="") as f:
        for i, message in enumerate(f.read().split("\n")):
            if not message.strip():
                continue
            parsed = {
                "file": file_path, "message_id": i, "patient_id": "unknown", "message_type": "unknown",
                "hospital": "unknown", "timestamp": "unknown", "patient_demographics": {}, "lab_results": [],
            }
            for segment in message.split("\r"):
                fields = segment.split("|")
                segment_type = fields[0] if fields else ""
                if segment_type == "MSH" and len(fields) > 8:
                    parsed.update({"message_type": fields[8], "hospital": fields[3], "timestamp": fields[6]})
                elif segment_type == "PID" and len(fields) > 8:
                    parsed.update({
                        "patient_id": fields[3],
                        "patient_demographics": {
                            "name": fields[5], "birth_date": fields[7], "gender": fields[8],
                            "address": fields[11] if len(fields) > 11 else "unknown",
                        },
                    })
                elif segment_type == "OBX" and len(fields) > 5:
                    parsed["lab_results"].append({
                        "test_name": fields[3], "value": fields[5],
                        "units": fields[6] if len(fields) > 6 else "",
                        "reference_range": fields[7] if len(fields) > 7 else "",
                    })
            parsed_messages.append(parsed)
    return parsed_messages


def run_single_thread(files: list[str], output: str) -> int:
    rows = []
    for path in files:
        rows.extend(parse_file_single_thread(path))
    pd.DataFrame(rows).to_parquet(output)
    return len(rows)

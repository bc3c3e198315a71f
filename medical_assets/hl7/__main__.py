"""`python -m medical_assets.hl7 inspect FILE [--values]`: a debugging aid for authorised staff in the PHI zone."""

from __future__ import annotations

import argparse
import sys

from medical_assets.hl7.inspect import inspect_file


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m medical_assets.hl7", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    inspect = commands.add_parser(
        "inspect", help="describe each message of an HL7 file: offsets, separators, charset, segments, verdict"
    )
    inspect.add_argument("file", help="an HL7 v2 ER7 file")
    inspect.add_argument(
        "--values", action="store_true", help="also print every field's value (PHI: authorised staff only)"
    )
    arguments = parser.parse_args(argv)
    try:
        with open(arguments.file, "rb") as file:
            data = file.read()
    except OSError as error:
        print(f"cannot read {arguments.file}: {error.strerror}", file=sys.stderr)
        return 1
    for line in inspect_file(data, arguments.file, values=arguments.values):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`python -m medical_assets.privacy`: re-identify a token, make a pseudonym key, read the audit log.

  reidentify TOKEN [--domain patient] --purpose "why"   print the value sealed in a reversible token
             [--release-scope NAME]                     (of a release made with MEDICAL_ASSETS_RELEASE_SCOPE)
  new-key                                               print a fresh key for MEDICAL_ASSETS_PSEUDONYM_KEY
  audit                                                 print the audit log, one JSON record a line
  audit --verify [--anchor HASH]                        check the log's hash chain: exit 0 and the count when
                                                        intact, 3 and the first broken record when not
"""

from __future__ import annotations

import argparse
import secrets
import sys

import pyarrow as pa

from medical_assets.config import ConfigurationError, load_settings
from medical_assets.privacy.audit import AuditLog, AuditLogError, ChainReport
from medical_assets.privacy.keys import MIN_SECRET_BYTES, PSEUDONYM_KEY_VAR, RELEASE_SCOPE_VAR
from medical_assets.privacy.pseudonyms import ISSUER_SEPARATOR
from medical_assets.privacy.reidentify import (
    DEFAULT_DOMAIN,
    ReidentificationDenied,
    ReidentificationFailed,
    reidentify,
)

EXIT_FAILED = 1
EXIT_DENIED = 2  # as argparse uses for a request that is incomplete
EXIT_BROKEN_CHAIN = 3  # the audit log was tampered with (or damaged): distinct, for the scripts that sign it


def readable_identity(value: str) -> str:
    """A patient token seals the MRN with its assigning authority (`pseudonyms.patient_identity`):
    shown as `MRN<TAB>issuer`, since the separator between them does not print."""
    issuer, separator, mrn = value.partition(ISSUER_SEPARATOR)
    return f"{mrn}\t{issuer}" if separator else value


def main(argv: list[str] | None = None) -> int:
    arguments = _parser().parse_args(argv)
    try:
        return arguments.run(arguments)
    except ReidentificationDenied as refusal:
        print(f"refused: {refusal}", file=sys.stderr)
        return EXIT_DENIED
    except (ReidentificationFailed, ConfigurationError, AuditLogError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILED
    except (OSError, pa.ArrowException) as error:
        print(f"error: {type(error).__name__}: {error}", file=sys.stderr)
        return EXIT_FAILED


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m medical_assets.privacy", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    reid = commands.add_parser("reidentify", help="print the value sealed in a reversible token (audited)")
    reid.add_argument("token", help="a reversible token, rv1.<key id>.<data>")
    reid.add_argument("--domain", default=DEFAULT_DOMAIN, help=f"the token's domain (default: {DEFAULT_DOMAIN})")
    reid.add_argument(
        "--purpose",
        help="why you need the value; kept in the audit log, so write no patient data in it "
        "(asked for when omitted and stdin is a terminal)",
    )
    reid.add_argument(
        "--release-scope",
        help=f"the release scope the data set was made with (default: {RELEASE_SCOPE_VAR}, else none)",
    )
    reid.set_defaults(run=_reidentify)
    new_key = commands.add_parser("new-key", help=f"print a fresh random key for {PSEUDONYM_KEY_VAR}")
    new_key.set_defaults(run=_new_key)
    audit = commands.add_parser("audit", help="print every audit record, oldest first, one JSON object a line")
    audit.add_argument(
        "--verify",
        action="store_true",
        help="check the hash chain instead: name the first record deleted, changed or reordered",
    )
    audit.add_argument(
        "--anchor",
        metavar="HASH",
        help="with --verify: a head hash noted at an earlier verification; it must still be in the chain "
        "(catches newest records cut off, or the whole log rewritten)",
    )
    audit.set_defaults(run=_audit)
    return parser


def _reidentify(arguments: argparse.Namespace) -> int:
    purpose = arguments.purpose
    if purpose is None:
        purpose = _ask_purpose() if sys.stdin.isatty() else ""
    print(readable_identity(reidentify(arguments.token, purpose, arguments.domain, release_scope=arguments.release_scope)))
    return 0


def _ask_purpose() -> str:
    # The prompt goes to stderr: stdout carries only the value, for scripts that capture it.
    print("Purpose of this re-identification (kept in the audit log): ", end="", file=sys.stderr, flush=True)
    try:
        return sys.stdin.readline()
    except KeyboardInterrupt:
        # Giving up at the prompt is a request without a purpose: refused, and recorded as such.
        print(file=sys.stderr)
        return ""


def _new_key(arguments: argparse.Namespace) -> int:
    print(secrets.token_urlsafe(MIN_SECRET_BYTES))
    print(
        f"set it as {PSEUDONYM_KEY_VAR} and keep it secret; to rotate, put the new key first: new,old",
        file=sys.stderr,
    )
    return 0


def _audit(arguments: argparse.Namespace) -> int:
    log = AuditLog.in_data_dir(load_settings().data_dir)
    if arguments.anchor and not arguments.verify:
        print("error: --anchor goes with --verify", file=sys.stderr)
        return EXIT_FAILED
    if arguments.verify:
        return _verify(log.verify(), arguments.anchor)
    for record in log.records():
        print(record.to_json())
    return 0


def _verify(report: ChainReport, anchor: str | None) -> int:
    if not report.intact:
        print(f"audit log broken at record {report.broken_at}: {report.problem}", file=sys.stderr)
        return EXIT_BROKEN_CHAIN
    if anchor and anchor.strip().lower() not in report.hashes:
        print(
            f"audit log broken: the anchor is not in the chain of {report.records} records "
            "(records after it were removed, or the log was rewritten)",
            file=sys.stderr,
        )
        return EXIT_BROKEN_CHAIN
    earlier = f", and the {report.legacy_records} records from before the chain" if report.legacy_records else ""
    print(f"audit log intact: {report.records} chained records{earlier}")
    if report.head_hash:
        print(f"head: {report.head_hash}  (note it; check later with --verify --anchor {report.head_hash})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The nightly schedule and the new-file sensor, evaluated on a real (ephemeral) Dagster instance."""

import dagster as dg

from medical_assets.defs import schedules
from medical_assets.defs.resources import PipelineConfig
from medical_assets.landing import changed_files, manifest_table, run_key_for
from medical_assets.sources.folder import LandingFile, list_landing_files
from medical_assets.storage import resolve_location, write_table_atomically
from medical_assets_tests import hl7_samples


def test_the_schedule_runs_the_whole_graph_nightly_at_two_utc():
    schedule = schedules.nightly_schedule
    assert schedule.cron_schedule == "0 2 * * *"
    assert schedule.execution_timezone == "UTC"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    from medical_assets.definitions import defs

    job = defs.resolve_job_def("full_pipeline")
    assert {k.to_user_string() for k in job.asset_layer.executable_asset_keys} >= {"hl7_messages", "deid/hl7_messages"}
    context = dg.build_schedule_context(scheduled_execution_time=None)
    assert isinstance(schedule.evaluate_tick(context).run_requests[0], dg.RunRequest)


def _sensor(data_dir, hl7_source, dicom_source, instance):
    with dg.build_sensor_context(
        instance=instance,
        resources={"pipeline": PipelineConfig(data_dir=str(data_dir), hl7_source=str(hl7_source), dicom_source=str(dicom_source))},
    ) as context:
        return schedules.new_landing_files(context)


def _manifest_now(source, target):
    files = list_landing_files(resolve_location(str(source)), (".hl7",))
    write_table_atomically(manifest_table(files, {f.path: "0" * 64 for f in files}), resolve_location(str(target)))


def test_a_new_file_requests_one_run_and_the_same_file_none(tmp_path):
    hl7, dicom, data = tmp_path / "hl7", tmp_path / "dicom", tmp_path / "data"
    hl7.mkdir()
    dicom.mkdir()
    with dg.instance_for_test() as instance:
        assert isinstance(_sensor(data, hl7, dicom, instance), dg.SkipReason)  # nothing landed yet

        (hl7 / "feed-1.hl7").write_bytes(hl7_samples.clean_feed())
        first = _sensor(data, hl7, dicom, instance)
        assert isinstance(first, dg.RunRequest) and first.tags["landing/hl7_files"] == "1"
        assert _sensor(data, hl7, dicom, instance).run_key == first.run_key  # same files: same key, deduplicated

        _manifest_now(hl7, data / "manifests" / "hl7_landing" / "manifest.parquet")  # the run processed it
        assert isinstance(_sensor(data, hl7, dicom, instance), dg.SkipReason)

        (hl7 / "feed-2.hl7").write_bytes(hl7_samples.clean_feed())
        second = _sensor(data, hl7, dicom, instance)
        assert second.run_key != first.run_key and second.tags["landing/hl7_files"] == "1"


def test_a_changed_file_is_new_again():
    files = [LandingFile("/l/a.hl7", "a.hl7", 10, 1_000_000_000), LandingFile("/l/b.hl7", "b.hl7", 5, 2_000_000_000)]
    manifest = manifest_table(files, {f.path: "x" for f in files})
    assert changed_files(files, manifest) == []
    touched = [files[0], LandingFile("/l/b.hl7", "b.hl7", 5, 3_000_000_000)]
    assert changed_files(touched, manifest) == [touched[1]]
    grown = [LandingFile("/l/a.hl7", "a.hl7", 11, 1_000_000_000), files[1]]
    assert changed_files(grown, manifest) == [grown[0]]
    assert run_key_for("hl7", touched) != run_key_for("hl7", files) == run_key_for("hl7", list(reversed(files)))

"""DICOM measurements for `make bench`: pixel statistics in a plain pydicom loop and in our Ray job."""

import glob
import os
import time

from medical_assets.dicom import read_dicom_file
from medical_assets.synthetic.dicom import DicomCorpusSettings, file_name, render_file


def write_corpus(folder: str, total_files: int) -> None:
    os.makedirs(folder, exist_ok=True)
    settings = DicomCorpusSettings(total_files=total_files)
    for index in range(total_files):
        path = os.path.join(folder, file_name(index))
        if not os.path.exists(path):
            with open(path, "wb") as out:
                out.write(render_file(settings, index))


def corpus_files(folder: str) -> list[str]:
    return sorted(glob.glob(os.path.join(folder, "*.dcm")))


def dicom_single_process(files, output):
    """The baseline: one process reading each file and computing its pixel statistics (pydicom + numpy).

    Two passes, like the Ray job's two jobs: `job_s` is the first (pydicom's pixel handlers and
    decoder plugins load on first use), `warm_job_s` the second, the loop's steady throughput.
    """
    timings = []
    for _ in range(2):
        started = time.perf_counter()
        images = 0
        for path in files:
            with open(path, "rb") as f:
                images += read_dicom_file(f.read(), path).images.num_rows
        timings.append(time.perf_counter() - started)
    return {"messages": images, "job_s": timings[0], "warm_job_s": timings[1]}


def dicom_ray_job(files, output):
    """Our Ray job (statistics only, like the baseline), run twice on one Ray.

    `job_s` is the first run (what a nightly run's first DICOM job costs, Ray Data's own start
    included); `warm_job_s` the second (the engine's steady throughput). Neither includes
    Ray's start and stop, which `seconds` does.
    """
    from medical_assets.config import IN_PROCESS_JOBS_VAR
    from medical_assets.dicom.tables import TABLES
    from medical_assets.engine import jobs
    from medical_assets.engine.runtime import RayRuntime
    from medical_assets.sources.folder import LandingFile
    from medical_assets.storage import TablePublication, resolve_location

    # The Ray job is what is measured, however small the input (BENCH_QUICK's would run in this process).
    os.environ[IN_PROCESS_JOBS_VAR] = "0"
    runtime = RayRuntime()
    runtime.ensure_started()
    try:
        zone = resolve_location(output)
        landing = [LandingFile(p, os.path.basename(p), os.path.getsize(p), None) for p in files]
        timings = []
        for _ in range(2):
            started = time.perf_counter()
            publication = TablePublication(zone)
            counts = jobs.parse_dicom_files(
                landing, zone.filesystem, publication, lambda c, e: None, with_thumbnails=False
            )
            publication.commit(TABLES)
            timings.append(time.perf_counter() - started)
    finally:
        runtime.stop()
    return {"messages": counts.get("dicom_images", 0), "job_s": timings[0], "warm_job_s": timings[1]}

"""Spark local mode as a baseline: the tutorial's parse of the same files, written to Parquet.

    PYTHON benchmarks/spark.py CORPUS OUTPUT    (prints JSON, as benchmarks.measure does)

Run by a Python that has pyspark, with Java on the PATH: the project's venv when pyspark is
installed there, else the interpreter named by BENCH_SPARK_PYTHON. It imports nothing from the
project, so a throwaway venv with pyspark alone will do. The job is what a Spark user would
write for the tutorial's parser: read the files as text, one message per line, and extract the
same fields (MSH-9, MSH-4, MSH-7, MSH-10, PID-3, -5, -7, -8, -11 and every OBX) with Spark SQL
functions, so that the parsing runs in the JVM rather than in Python UDFs.
"""

import json
import os
import sys
import time


def main(corpus: str, output: str) -> None:
    started = time.perf_counter()
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    cores = os.cpu_count() or 1
    spark = (
        SparkSession.builder.master(f"local[{cores}]")
        .appName("medical-assets-bench")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.memory", os.environ.get("BENCH_SPARK_DRIVER_MEMORY", "2g"))
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.sql.shuffle.partitions", str(cores))
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    session_s = time.perf_counter() - started
    try:
        job_started = time.perf_counter()
        # lineSep: segments are separated by CR inside a line, which Spark's default would split on.
        lines = spark.read.option("lineSep", "\n").text(os.path.join(corpus, "*.hl7"))
        messages = lines.where(F.trim("value") != "").select(
            F.input_file_name().alias("file"), F.split("value", "\r").alias("segments")
        )
        msh = F.split(F.col("segments")[0], r"\|")
        pid = F.split(F.filter("segments", lambda s: s.startswith("PID|"))[0], r"\|")

        def observation(segment):
            fields = F.split(segment, r"\|")
            return F.struct(
                fields[3].alias("test_name"), fields[5].alias("value"),
                fields[6].alias("units"), fields[7].alias("reference_range"),
            )

        parsed = messages.select(
            "file",
            msh[8].alias("message_type"), msh[3].alias("hospital"), msh[6].alias("timestamp"),
            msh[9].alias("message_control_id"), pid[3].alias("patient_id"), pid[5].alias("name"),
            pid[7].alias("birth_date"), pid[8].alias("gender"), pid[11].alias("address"),
            F.transform(F.filter("segments", lambda s: s.startswith("OBX|")), observation).alias("lab_results"),
        )
        target = os.path.join(output, "spark_messages")
        parsed.write.mode("overwrite").parquet(target)
        job_s = time.perf_counter() - job_started
        count = spark.read.parquet(target).count()
    finally:
        spark.stop()
    print(json.dumps({"messages": count, "session_s": session_s, "step_s": job_s, "seconds": time.perf_counter() - started}))


if __name__ == "__main__":
    main(*sys.argv[1:3])

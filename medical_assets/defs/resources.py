"""Resources: the pipeline's settings and the Ray engine, both resolved when a run starts."""

from __future__ import annotations

import os

import dagster as dg
from pydantic import Field, PrivateAttr

from medical_assets.config import PipelineSettings, load_settings
from medical_assets.engine.runtime import RayRuntime


class PipelineConfig(dg.ConfigurableResource):
    """Where data lives. Unset fields fall back to the environment variables of the README."""

    data_dir: str | None = Field(default=None, description="Root of every zone; default MEDICAL_ASSETS_DATA_DIR or ./data")
    hl7_source: str | None = Field(default=None, description="HL7 landing folder; default MEDICAL_ASSETS_HL7_SOURCE")
    synthetic_hl7_messages: int | None = Field(
        default=None, description="Size of the synthetic HL7 corpus; default MEDICAL_ASSETS_SYNTHETIC_HL7_MESSAGES or 50,000"
    )

    def settings(self) -> PipelineSettings:
        return load_settings(
            data_dir=self.data_dir, hl7_source=self.hl7_source, synthetic_hl7_messages=self.synthetic_hl7_messages
        )


class RayResource(dg.ConfigurableResource):
    """Ray for one run: started at the first asset that needs it, stopped when the run ends.

    With RAY_ADDRESS (or `address`) set it joins that cluster and leaves it running;
    otherwise it starts a private local Ray bound to 127.0.0.1.
    """

    address: str | None = Field(default=None, description="Ray cluster to join; default RAY_ADDRESS, else a local Ray")
    num_cpus: int | None = Field(default=None, description="CPUs of a local Ray; default all")

    _runtime: RayRuntime | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._runtime = RayRuntime(address=self.address or os.environ.get("RAY_ADDRESS") or None, num_cpus=self.num_cpus)

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._runtime is not None:
            self._runtime.stop()

    def ensure_started(self) -> None:
        if self._runtime is None:
            raise RuntimeError("RayResource used outside a Dagster run")
        self._runtime.ensure_started()

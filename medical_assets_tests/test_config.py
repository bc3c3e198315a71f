import pytest

from medical_assets.config import (
    HL7_SOURCE_VAR,
    ConfigurationError,
    load_settings,
    require_readable_source,
)


def test_defaults_put_everything_under_data(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = load_settings({})
    assert settings.data_dir.path == str(tmp_path / "data")
    assert settings.hl7_source.path == str(tmp_path / "data" / "landing" / "hl7")
    assert not settings.hl7_source_is_external
    assert settings.synthetic_hl7_messages == 50_000


def test_environment_variables_are_honoured(tmp_path):
    settings = load_settings(
        {
            "MEDICAL_ASSETS_DATA_DIR": str(tmp_path / "d"),
            HL7_SOURCE_VAR: str(tmp_path / "feed"),
            "MEDICAL_ASSETS_SYNTHETIC_HL7_MESSAGES": "123",
        }
    )
    assert settings.zone("phi").path == str(tmp_path / "d" / "phi")
    assert settings.hl7_source.path == str(tmp_path / "feed")
    assert settings.hl7_source_is_external
    assert settings.synthetic_hl7_messages == 123


def test_a_bad_number_names_the_variable():
    with pytest.raises(ConfigurationError, match="MEDICAL_ASSETS_SYNTHETIC_HL7_MESSAGES"):
        load_settings({"MEDICAL_ASSETS_SYNTHETIC_HL7_MESSAGES": "many"})


def test_missing_source_folder_names_the_variable(tmp_path):
    settings = load_settings({HL7_SOURCE_VAR: str(tmp_path / "nowhere")})
    with pytest.raises(ConfigurationError, match=f"{HL7_SOURCE_VAR} points to .*nowhere.*not an existing folder"):
        require_readable_source(settings.hl7_source, HL7_SOURCE_VAR)

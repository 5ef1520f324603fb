"""schemas/ is generated from app/events (and the config file's model) and must not drift."""

import json

from app.cli.schemas import CONFIG_SCHEMA, EXPORT_COMMAND, drift, rendered


def test_committed_schemas_match_the_models():
    stale = drift()
    assert not stale, f"schemas/ drifts from app/events ({', '.join(stale)}); run: {EXPORT_COMMAND}"


def test_every_record_type_has_a_schema_with_type_and_version():
    for name, text in rendered().items():
        if name == CONFIG_SCHEMA:
            continue
        assert '"schema_version"' in text and '"type"' in text, name


def test_the_config_file_schema_names_its_keys_and_refuses_others():
    schema = json.loads(rendered()[CONFIG_SCHEMA])
    assert set(schema["properties"]) == {"version", "include", "exclude"}
    assert schema["additionalProperties"] is False

"""schemas/ is generated from app/events and must not drift."""

from app.cli.schemas import EXPORT_COMMAND, drift, rendered


def test_committed_schemas_match_the_models():
    stale = drift()
    assert not stale, f"schemas/ drifts from app/events ({', '.join(stale)}); run: {EXPORT_COMMAND}"


def test_every_record_type_has_a_schema_with_type_and_version():
    for name, text in rendered().items():
        assert '"schema_version"' in text and '"type"' in text, name

"""Each topic's union in app.events is written out for the type checker: it must list exactly
the models of the tuple the rest of the code iterates, in the same order (the schemas' order)."""

from typing import get_args

import pytest

from app.events import (
    CONTROL_EVENTS,
    PRODUCER_EVENTS,
    ControlRecord,
    DeadLettered,
    DlqRecord,
    LifecycleRecord,
    ProducerEvent,
    RedriveAccepted,
)
from app.events.sync import LIFECYCLE_EVENTS


@pytest.mark.parametrize(
    ("union", "models"),
    [
        (ControlRecord, CONTROL_EVENTS),
        (LifecycleRecord, LIFECYCLE_EVENTS),
        (ProducerEvent, PRODUCER_EVENTS),
        (DlqRecord, (DeadLettered, RedriveAccepted)),
    ],
    ids=["control", "lifecycle", "producer", "dlq"],
)
def test_each_topic_union_lists_exactly_its_models_discriminated_by_type(union, models):
    members, field = get_args(union)
    assert get_args(members) == tuple(models)
    assert field.discriminator == "type"

"""The fault suite's options and its closing table of figures.

`pytest tests/faults --long` multiplies the load (for manual runs); the default
is the CI size. The figures of every scenario are printed at the end of the
session by tests/conftest.py (the root conftest: under pytest-xdist the controller that
prints the summary never loads this one), so they appear in CI's output.
"""

from __future__ import annotations

import dataclasses
import logging

import pytest

from tests.faults.checker import FIGURES

LONG_SCALE = 5


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--long",
        action="store_true",
        default=False,
        help=f"fault suite: {LONG_SCALE}x the deliveries of the CI size (manual runs)",
    )


@pytest.fixture(scope="session")
def load_scale(request: pytest.FixtureRequest) -> int:
    # The option exists only when this conftest is loaded at start (pytest tests/faults --long).
    return LONG_SCALE if request.config.getoption("--long", default=False) else 1


@pytest.fixture(autouse=True)
def _quiet_clients():
    for name in ("aiokafka", "kafka", "tests.faults.harness"):
        logging.getLogger(name).setLevel(logging.ERROR)


@pytest.fixture(autouse=True)
def _report_figures(request: pytest.FixtureRequest):
    """Carry each scenario's figures in its report: under pytest-xdist the scenarios run in
    worker processes, and reports are what reaches the controller that prints the table."""
    before = len(FIGURES)
    yield
    for figures in FIGURES[before:]:
        request.node.user_properties.append(("fault_figures", dataclasses.asdict(figures)))

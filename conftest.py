"""The names the ``Examples`` sections of gpuptc's docstrings use, for their doctests.

``pytest`` collects the examples of ``src/gpuptc`` (``--doctest-modules``) and every one
of them finds, besides its module's names:

- ``simulated``: a small simulated e2v sensor (:func:`gpuptc.simulate` with
  ``size="small"``, 6 flat pairs and 3 biases), made once per test session;
- ``raw_dir``: the directory of its raw files (``simulated.directory``);
- ``pairs``, ``covariances``: its measurements, ``gpuptc.measure(gpuptc.ingest(raw_dir))``;
- ``tmp``: an empty directory of the example's own.

The sensor is simulated and measured only in a process that runs an example.
"""

from __future__ import annotations

from typing import Any

import pytest
from _pytest.doctest import DoctestItem


@pytest.fixture(scope="session")
def _doctest_sensor(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from gpuptc import ingest, measure, simulate

    simulated = simulate(
        tmp_path_factory.mktemp("doctest-raw"),
        vendor="e2v",
        size="small",
        pairs=6,
        biases=3,
        seed=1,
        workers=1,
    )
    pairs, covariances = measure(ingest(simulated.directory), backend="numpy")
    return {
        "simulated": simulated,
        "raw_dir": simulated.directory,
        "pairs": pairs,
        "covariances": covariances,
    }


@pytest.fixture(autouse=True)
def _doctest_names(request: pytest.FixtureRequest) -> None:
    """Fill ``doctest_namespace`` before each example of ``src/gpuptc`` (nothing for tests)."""
    if not isinstance(request.node, DoctestItem):
        return
    namespace = request.getfixturevalue("doctest_namespace")
    namespace.update(request.getfixturevalue("_doctest_sensor"))
    namespace["tmp"] = request.getfixturevalue("tmp_path")

"""DAG tests run against a throwaway AIRFLOW_HOME, set before Airflow is first imported."""

from __future__ import annotations

import os
import tempfile

_home = tempfile.mkdtemp(prefix="airloop-dagtests-")
os.environ["AIRFLOW_HOME"] = _home
os.environ["AIRLOOP_HOME"] = os.path.join(_home, "state")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "True"

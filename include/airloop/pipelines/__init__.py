"""One module per DAG: each function is what one task does, callable without Airflow."""

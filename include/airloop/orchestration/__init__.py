"""What Airflow sees: per-model Assets, DAG factory, notifier, run params, pools, UI links."""

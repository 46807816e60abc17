"""Running airloop: the embedded stack, the task-process preloader, Airflow's REST API, CI triggers."""

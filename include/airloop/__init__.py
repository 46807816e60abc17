"""airloop: a tabular dataset plus one YAML config, continuously validated, trained and watched."""

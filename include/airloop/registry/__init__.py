"""The MLflow side: tracking, the registry's versions and aliases, model cards, promotion locks."""

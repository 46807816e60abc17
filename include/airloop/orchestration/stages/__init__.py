"""One module per stage: `build(model)` wires that stage's DAG for one model."""

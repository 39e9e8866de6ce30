"""KFP pipelines: wiring only."""

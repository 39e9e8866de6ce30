"""KFP step bodies, one module per pipeline: path-in/path-out functions, each called by one component."""

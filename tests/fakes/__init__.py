"""Servers and stand-ins the tests run on 127.0.0.1: S3, a Kubernetes API, the hub, an OpenAI-style LLM."""

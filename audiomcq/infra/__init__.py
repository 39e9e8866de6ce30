"""Infrastructure adapters: S3 storage, HTTP fetches, Pushgateway metrics and the Kubernetes API."""

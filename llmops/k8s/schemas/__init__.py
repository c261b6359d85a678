"""The project's own JSON schemas of the custom resources it renders (package data, see `llmops.k8s.validate`)."""

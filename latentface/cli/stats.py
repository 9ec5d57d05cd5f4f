from latentface.data.stats import configure_parser, run  # noqa: F401  (temporary forwarder)

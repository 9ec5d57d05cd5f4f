from latentface.evaluate import configure_parser, run  # noqa: F401  (temporary forwarder)

from latentface.demo import configure_parser, run  # noqa: F401  (temporary forwarder)

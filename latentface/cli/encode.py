from latentface.data.encode import configure_parser, run  # noqa: F401  (temporary forwarder)

from latentface.data.synth import configure_parser, run  # noqa: F401  (temporary forwarder)

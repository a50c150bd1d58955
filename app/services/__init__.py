"""Use cases: decode -> preprocess -> batched predict -> postprocess."""

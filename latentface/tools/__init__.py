"""Applications built on the library: benchmarks, the demo, the Kaggle kernel, the threshold tuner, notebook support."""

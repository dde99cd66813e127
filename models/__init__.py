"""Machine-learning models: arrays in, dataclasses and arrays out; no Django."""

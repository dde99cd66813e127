"""Context anomaly detection over metrics and logs (no Django).

A transformer encoder reads one window per instance or node: the metric matrix (robustly
normalised) and the log lines of the same window as drain3 template counts hashed into a
fixed vocabulary, plus time of day and day of week. It forecasts the window's last patch
(self-supervised) and, where labels exist, classifies anomalous vs normal and the scenario.
Post-processing is separate: raw score -> calibrated 0-100 -> threshold -> events, with
attribution to metrics and log templates.

Serving API: ``models.anomaly.detector`` (``AnomalyDetector``, ``Window``, ``WindowScore``).
Training: ``models.anomaly.train.train(TrainConfig(...))``. Evaluation:
``models.anomaly.evaluate`` (``add_arguments``, ``run``, ``format_table``). See
docs/anomaly.md.
"""

"""Evaluating models: metrics, reports and figures, ensembles and test-time augmentation."""

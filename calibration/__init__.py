"""Calibration: the calibration text (C-Eval by default, or plain text files) and activation statistics."""

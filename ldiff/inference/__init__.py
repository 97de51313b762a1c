"""Prediction: filling and synthesising lesions in NIfTI scans."""

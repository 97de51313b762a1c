"""Evaluation: metrics of both protocols, offline LPIPS, classic fillers."""

"""Thin command-line entry points: argument parsing only, the work is done by library functions."""

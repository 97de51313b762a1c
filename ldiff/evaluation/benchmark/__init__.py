"""Benchmarks on users' own scans: transplanted lesions with known truth, and real lesions without.

``transplant`` builds the cases, ``lesion_context`` measures lesions against the tissue around them,
``methods`` runs the fillers, ``runner`` scores them and ``report`` writes tables, plots and previews.
"""

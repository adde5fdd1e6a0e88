"""Evaluation reports (``emoadapt report``): metrics with bootstrap intervals, confusion matrices,
calibration, embedding plots and explained examples per class, in one offline HTML page plus
``report.json`` and the PNGs.

>>> from emoadapt.report import ReportOptions, build_report
>>> report = build_report(ReportOptions(models=["emoadapt-ier"], data="DATA/emotion6", out="report/"))
>>> report["models"][0]["metrics"]["accuracy"]
"""

from .build import ReportOptions, build_report

__all__ = ["ReportOptions", "build_report"]

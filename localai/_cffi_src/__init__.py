"""Build-time only: the cffi module definitions, compiled by build.py (never imported at run time)."""

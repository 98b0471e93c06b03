"""Loader placeholder: being written."""

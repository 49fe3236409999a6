"""Bridges to other frameworks (optional extras): ``mmengine`` mirrors the plugin's archs into an
mmengine registry."""

"""Thin HTTP entrypoints: a schema in, one service call, a schema out."""

"""Data sets (generated or read from data/) and artifact I/O."""

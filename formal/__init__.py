"""Formal verification of the bus interfaces with SymbiYosys (``python -m formal``)."""

"""Handlers: one module per prebuilt component, one plain function per webhook tag.

Each takes its validated parameters and a `Call` (the unit of work, the settings, who is calling) and returns
a result model. They know no Flask, no HTTP and no CX wire format.
"""

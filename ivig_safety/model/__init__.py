"""What goes in and comes out: units and quantities, input bounds, the Plan, the Report, the errors.

The bottom layer: imports nothing else from ivig_safety.
"""

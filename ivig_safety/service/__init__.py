"""Services that run the checker for other systems (next: the CDS Hooks app). Empty for now.

A shell like cli: may import check, formats and everything below; nothing in ivig_safety imports it.
"""

"""Reading and writing orders and reports: text and JSON rendering of a Report, the CSV order columns (next: FHIR,
CDS Hooks cards). May import ivig_safety.check and everything below it; renderers take a finished Report.
"""

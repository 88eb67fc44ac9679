"""Check many plans in one run: sources (files, folders, stdin), rows (decoding, checking), workers, writers,
the summary. A shell over ivig_safety.check: may import check, formats, knowledge and model; only cli imports it.
"""

from ..formats.csv_orders import CSV_COLUMNS, csv_row_to_plan, parse_steps
from .rows import BatchInputError, BatchResult, InputRow, process_row
from .sources import MAX_LINE_BYTES, Source, open_source
from .summary import Summary
from .workers import check_many, encoded_batches, run_batch
from .writers import CSV_OUTPUT_FIELDS, ENCODERS, OUTPUT_FIELDS, WRITERS, CsvWriter, JsonlWriter

__all__ = ["BatchInputError", "BatchResult", "InputRow", "Source", "Summary", "check_many", "csv_row_to_plan",
           "open_source", "parse_steps", "process_row", "run_batch", "encoded_batches", "JsonlWriter", "CsvWriter",
           "WRITERS", "ENCODERS", "MAX_LINE_BYTES", "CSV_COLUMNS", "OUTPUT_FIELDS", "CSV_OUTPUT_FIELDS"]

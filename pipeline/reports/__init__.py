"""Stage 7, reading the output: DuckDB views for SQL, result formats, the data dictionary and
the HTML report. Reads datasets only; never imports the scan."""

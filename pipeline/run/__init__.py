"""Stage 6, a run: planning against the ledger, the scan loop on Ray (analyses, batching across
sessions, scoring actors), committing rows exactly once, and the run summary."""

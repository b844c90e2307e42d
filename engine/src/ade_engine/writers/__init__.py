"""Output writers: file naming and atomic files, CSV tables, and a streaming XLSX writer."""
